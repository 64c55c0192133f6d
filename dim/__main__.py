from dim.cli import main

main(prog_name="dim")
