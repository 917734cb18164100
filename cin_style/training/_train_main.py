"""``cin-style train`` as a script file, for the processes Lightning's DDP launcher starts.

Lightning starts each extra process of a single-machine DDP run by re-running the command
of the first one with Hydra's run folder appended (``python SCRIPT OVERRIDES hydra.run.dir=...``).
``cin-style train`` runs Hydra with this file as its script, so the extra processes come here
and join the same run folder.
"""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this package's folder: its modules must not shadow top-level ones
    from cin_style.training.train import main

    sys.exit(main(sys.argv[1:]))
