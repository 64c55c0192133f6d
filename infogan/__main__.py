from infogan.cli import main

main(prog_name="infogan")
