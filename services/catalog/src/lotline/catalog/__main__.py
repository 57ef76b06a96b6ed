from lotline.catalog.app import main

main()
