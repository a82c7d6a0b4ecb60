"""The experiment matrix: for each (model, experiment, repeat) clear -> serve -> time the first token ->
stop -> parse -> append one result row.

The system under test sits behind a three-method interface (``sut``, MLPerf loadgen style), so the loop's
ordering, resume and failure isolation are tested with a fake, and the real one (``service_sut``) is the same
``service.py`` / ``client.py`` pair a user runs by hand.

Modules, arrows pointing down: ``cli`` (``python -m coldstart matrix``) uses ``loop`` (run what is pending
under a progress bar), which uses ``rows`` (one run, one row), ``answer`` (the greedy answer against the
baseline's), ``budget`` (how long a run will take) and ``results_file`` (appending rows, checked before the
first cold start); ``service_sut`` (service.py in its own process group) uses ``live`` (the phase line while a
cold start runs); all of them use ``plan`` (RunSpec, the plan, resume) and ``sut`` (the interface). Import a
name from its module: this package re-exports nothing, so ``campaign`` reading ``NODE_STATES`` loads no
subprocess code.
"""
