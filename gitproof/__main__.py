from gitproof.cli.main import main

main()
