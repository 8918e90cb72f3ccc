"""deqlab's command line: the only package that imports Typer, Hydra or OmegaConf.

``deqlab.cli.app`` holds the Typer app; :func:`main` is the console entry point.
"""


def main() -> None:
    import sys

    from deqlab.cli.streams import fill_closed, guard, lost_output, quiet_libraries, sane_columns
    from deqlab.cli.termination import end_children, hold_for_good, install_handlers, stopped_by

    fill_closed()   # `deqlab ... >&-`: no file opened later may take the number of stdout or stderr
    guard()   # `deqlab ... | head` must not turn a finished run into a failure
    sane_columns()   # COLUMNS=0 printed nothing
    quiet_libraries()   # stderr is for our one line

    # From the first instruction on, Ctrl-C, SIGTERM, SIGHUP and the other terminating signals end the process in one line: a run
    # folder in the making is marked .failed by the run's own handler; before or after a run (importing, composing the
    # settings), one line here, also when the signal broke into a library's cleanup and came out as another error.
    # The handlers stay for the process's last steps, where a signal is held back: Python's own handler, put back, turned a
    # Ctrl-C during the interpreter's shutdown after a successful run into a silent death by SIGINT.
    install_handlers()
    try:   # (a signal during the environment's checks, such as the OpenMP probe's child process, is a stop too)
        import os

        try:
            os.getcwd()
        except OSError:   # (it said "cannot compose the configuration from the overrides", blaming the overrides)
            sys.stderr.write("error: the working directory no longer exists (removed while this shell was in it): "
                             "cd to a folder that does, and run again\n")
            sys.exit(2)
        from deqlab.cli.environment import bad_openmp_variable, bad_thread_variable, draw_into_files

        draw_into_files()
        bad = bad_thread_variable() or bad_openmp_variable()   # (before torch loads: libgomp prints its own two lines for it)
        if bad is not None:
            sys.stderr.write(f"error: {bad}\n")
            sys.exit(2)
        from deqlab.cli.app import app

        app()
    except BaseException as exc:
        stop = None if isinstance(exc, SystemExit) else stopped_by(exc)
        if stop is None:
            lost = lost_output() if isinstance(exc, SystemExit) and exc.code in (0, None) else None
            if lost is not None:   # a finished run whose printed tables went nowhere (`> /dev/full`)
                name, error = lost
                sys.stderr.write(f"error: lost what was printed to {name}: {error.strerror or error}\n")
                sys.exit(1)
            raise
        hold_for_good()   # a second signal must not break into the last line
        end_children()
        sys.stderr.write(f"error: stopped by {stop.name}\n")
        sys.exit(stop.exit_code)
    finally:
        hold_for_good()
