from hparams_jax.cli import main

raise SystemExit(main())
