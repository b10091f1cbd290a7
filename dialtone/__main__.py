"""`python -m dialtone COMMAND`: the same as the `dialtone` command."""

from dialtone.commands import main

if __name__ == "__main__":
    main()
