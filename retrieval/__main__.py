from retrieval.cli import main

main(prog_name="dim-search")
