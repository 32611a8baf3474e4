from collections_ops.cli.app import main

main()
