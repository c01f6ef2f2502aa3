from wiretide.cli import main

raise SystemExit(main())
