from consuldns.cli import main

main()
