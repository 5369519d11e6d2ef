from pose3d.cli import main

raise SystemExit(main())
