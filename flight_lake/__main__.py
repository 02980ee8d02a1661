"""``python -m flight_lake`` runs the same command as ``flight-lake``."""

from flight_lake.cli import main

main()
