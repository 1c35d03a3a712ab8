from privattrib.cli import main

main()
