from lotline.cli.app import main

main()
