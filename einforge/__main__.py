from einforge.cli import main

raise SystemExit(main())
