from soups.cli import main

main()
