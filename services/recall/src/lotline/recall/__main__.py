from lotline.recall.app import main

main()
