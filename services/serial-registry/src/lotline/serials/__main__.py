from lotline.serials.app import main

main()
