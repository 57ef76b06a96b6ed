from lotline.stock.app import main

main()
