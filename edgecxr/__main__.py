from edgecxr.cli.app import main

main()
