"""The local cloud's supervision: the CLI side that starts and stops it (`manager`), the
supervisor process that starts and watches its parts (`daemon`, `monitor`) as child processes
(`children`), the embedded PostgreSQL it runs (`postgres`), and how it recognises its own
processes (`processes`)."""
