from gpuxbuild.cli import main

main()
