from nncli.cli import run

run()
