from lit_edit.tools import main

main()
