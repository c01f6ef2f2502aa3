from wiretide.hub.cli import main

raise SystemExit(main())
