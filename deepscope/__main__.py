"""``python -m deepscope``: the same command line as the ``deepscope`` script."""

if __name__ == "__main__":
    from deepscope.cli import main

    raise SystemExit(main())
