from .selector import main

main()
