from consuldns.cli.main import main

main()
