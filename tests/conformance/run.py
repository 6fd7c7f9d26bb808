#!/usr/bin/env python3
"""Run CPython's own asyncio test suite (test.test_asyncio) on PyLoop and on
asyncio's loop side by side, and compare.

    python tests/conformance/run.py                      # both loops, all modules
    python tests/conformance/run.py --loop asyncio -j 2
    python tests/conformance/run.py --modules test_tasks,test_futures -k cancel
    python tests/conformance/run.py --loop-factory uvloop:new_event_loop
    python tests/conformance/run.py --update-expectations

See tests/conformance/README.md.  Exit status: 0 clean, 1 new failures on the
loop under test or stale expectations, 2 usage/setup error.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, '_child.py')
DEFAULT_EXPECTATIONS = os.path.join(HERE, 'expected_failures.toml')
DEFAULT_OUT = os.path.join(HERE, 'results')
DEFAULT_FACTORY = 'data_bridge.pyloop:new_event_loop'
ASYNCIO_FACTORY = 'asyncio.events:new_event_loop'
FACTORY_ENV = 'PYLOOP_CONFORMANCE_FACTORY'
FAILING = ('failed', 'error')
EXIT_GRACE = 30.0       # seconds a child may take to exit after its last test
MAX_RESUMES = 25        # per module and side

sys.path.insert(0, HERE)
import adapters  # noqa: E402

# Rough asyncio-side durations (seconds, measured on a 2-core box) used only
# to start the longest modules first.
ESTIMATES = {
    'test_tasks': 20, 'test_events': 20, 'test_ssl': 15, 'test_subprocess': 15,
    'test_sendfile': 8, 'test_streams': 8, 'test_sock_lowlevel': 8,
    'test_sslproto': 8, 'test_locks': 5, 'test_queues': 4, 'test_runners': 4,
    'test_waitfor': 4, 'test_timeouts': 3, 'test_taskgroups': 3,
}


def die(msg):
    print(f'error: {msg}', file=sys.stderr)
    raise SystemExit(2)


# --------------------------------------------------------------------------
# Discovery

def asyncio_test_dir(python):
    out = subprocess.run(
        [python, '-c', 'import os, test.test_asyncio as t; print(os.path.dirname(t.__file__))'],
        capture_output=True, text=True)
    if out.returncode != 0:
        die(f'{python} has no test.test_asyncio package:\n{out.stderr}')
    return out.stdout.strip()


def discover_modules(python):
    d = asyncio_test_dir(python)
    names = sorted(f[:-3] for f in os.listdir(d)
                   if f.startswith('test_') and f.endswith('.py'))
    return names


# --------------------------------------------------------------------------
# Running one module on one side

@dataclass
class Job:
    module: str
    side: str               # 'asyncio' | 'pyloop'
    factory: str


@dataclass
class JobResult:
    module: str
    side: str
    status: str = 'ok'      # ok | timeout | crash | hang-at-exit
    tests: dict = field(default_factory=dict)
    duration: float = 0.0
    attempts: int = 0
    loops_created: int = 0
    other_loops: int = 0
    loop_types: set = field(default_factory=set)
    notes: list = field(default_factory=list)
    log: str = ''


class EventReader:
    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.tail = b''

    def poll(self):
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.tail + data
        lines = data.split(b'\n')
        self.tail = lines.pop()
        events = []
        for line in lines:
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _reap_group(proc):
    """Kill what is left in the child's process group after it exited."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _error(reason, duration=0.0, log=None):
    return {'outcome': 'error', 'reason': reason,
            'tb': f'see the log: {log}' if log else None,
            'duration': round(duration, 3), 'loops': 0, 'other_loops': 0}


def describe_rc(rc):
    if rc < 0:
        try:
            return f'signal {signal.Signals(-rc).name}'
        except ValueError:
            return f'signal {-rc}'
    return f'exit code {rc}'


def run_job(job, opts, stop_event):
    res = JobResult(job.module, job.side)
    logdir = os.path.join(opts.out_dir, 'logs', job.side)
    os.makedirs(logdir, exist_ok=True)
    res.log = os.path.join(logdir, f'{job.module}.log')
    workdir = tempfile.mkdtemp(prefix=f'conf-{job.side}-{job.module}-')
    t_start = time.monotonic()
    deadline = t_start + opts.timeout
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.pop(FACTORY_ENV, None)

    if job.side == 'pyloop':
        for tid in opts.hang_ids:
            if tid.startswith(job.module + '.'):
                res.tests[tid] = {'outcome': 'skipped', 'duration': 0, 'loops': 0,
                                  'other_loops': 0, 'tb': None,
                                  'reason': 'not run: expected to hang (--skip-expected-hangs)'}
    try:
        with open(res.log, 'w', encoding='utf-8') as log:
            log.write(f'# {job.module} on {job.side} ({job.factory})\n')
            while True:
                res.attempts += 1
                events_path = os.path.join(workdir, f'events-{res.attempts}.jsonl')
                skip_path = os.path.join(workdir, 'skip.json')
                with open(skip_path, 'w') as f:
                    json.dump(sorted(res.tests), f)
                cmd = [opts.python, CHILD, '--module', job.module,
                       '--factory', job.factory, '--events', events_path,
                       '--skip-file', skip_path,
                       '--test-timeout', str(opts.test_timeout)]
                for k in opts.k:
                    cmd += ['-k', k]
                log.write(f'\n# attempt {res.attempts}: {" ".join(cmd)}\n')
                log.flush()
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=workdir,
                                        env=env, start_new_session=True)
                reader = EventReader(events_path)
                current = None
                current_t0 = time.monotonic()
                last_activity = time.monotonic()
                done_at = None
                why = None
                while True:
                    for ev in reader.poll():
                        last_activity = time.monotonic()
                        kind = ev.get('ev')
                        if kind == 'start':
                            current = ev['id']
                            current_t0 = time.monotonic()
                        elif kind == 'result':
                            tid = ev.pop('id')
                            ev.pop('ev')
                            res.tests[tid] = ev
                            if tid == current:
                                current = None
                        elif kind == 'loop_type':
                            res.loop_types.add(ev['type'])
                        elif kind == 'done':
                            done_at = time.monotonic()
                    rc = proc.poll()
                    if rc is not None:
                        _reap_group(proc)   # e.g. 'sleep 3600' children a failing test left
                        for ev in reader.poll():    # late lines
                            if ev.get('ev') == 'result':
                                tid = ev.pop('id'); ev.pop('ev')
                                res.tests[tid] = ev
                                if tid == current:
                                    current = None
                        break
                    now = time.monotonic()
                    if stop_event.is_set():
                        why = 'interrupted'
                    elif done_at is not None and now - done_at > EXIT_GRACE:
                        why = 'hang-at-exit'
                    elif now > deadline:
                        why = 'timeout'
                    elif opts.test_timeout and now - last_activity > opts.test_timeout:
                        why = 'test-timeout'
                    if why:
                        _kill(proc)
                        rc = proc.returncode
                        break
                    time.sleep(0.1)

                mid = f'{job.module}.<module>'
                elapsed = time.monotonic() - current_t0
                if why == 'interrupted':
                    res.status = 'interrupted'
                    break
                if why == 'hang-at-exit':
                    res.status = 'hang-at-exit'
                    res.tests[mid] = _error(
                        f'timeout: process did not exit within {EXIT_GRACE:.0f}s after its '
                        'last test (non-daemon threads or a blocked finalizer?)',
                        log=res.log)
                    break
                if why == 'timeout':
                    res.status = 'timeout'
                    if current:
                        res.tests[current] = _error(
                            f'timeout: module time limit ({opts.timeout:.0f}s) reached '
                            'during this test', elapsed, res.log)
                    res.tests[mid] = _error(
                        f'timeout: module exceeded {opts.timeout:.0f}s '
                        '(remaining tests not run)', log=res.log)
                    break
                if why == 'test-timeout':
                    if current:
                        res.tests[current] = _error(
                            f'timeout: test made no progress for {opts.test_timeout:.0f}s',
                            elapsed, res.log)
                        res.notes.append(f'killed hung test {current}')
                    else:
                        res.status = 'timeout'
                        res.tests[mid] = _error(
                            f'timeout: no progress for {opts.test_timeout:.0f}s outside any '
                            'test (import, class or module fixture)', log=res.log)
                        break
                elif done_at is None and rc in (0, 3) and mid in res.tests:
                    res.status = 'error'     # import/adapter/factory failure, reported
                    break
                elif rc != 0 or done_at is None:
                    what = describe_rc(rc) if rc != 0 else 'exit without finishing'
                    if current:
                        res.tests[current] = _error(f'crash: {what} during this test',
                                                    elapsed, res.log)
                        res.notes.append(f'crash ({what}) in {current}')
                    else:
                        res.status = 'crash'
                        res.tests[mid] = _error(f'crash: child {what} outside any test',
                                                log=res.log)
                        break
                else:
                    break       # normal end
                # resume after the culprit, if time and patience remain
                if res.attempts > MAX_RESUMES:
                    res.status = 'crash'
                    res.tests[mid] = _error(f'gave up after {MAX_RESUMES} restarts',
                                            log=res.log)
                    break
                if time.monotonic() > deadline:
                    res.status = 'timeout'
                    res.tests[mid] = _error(f'timeout: module exceeded {opts.timeout:.0f}s',
                                            log=res.log)
                    break
                log.write(f'\n# resuming after {current!r}\n')
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res.duration = time.monotonic() - t_start
    res.loops_created = sum(t.get('loops') or 0 for t in res.tests.values())
    res.other_loops = sum(t.get('other_loops') or 0 for t in res.tests.values())
    return res


# --------------------------------------------------------------------------
# Expectations

def load_expectations(path):
    """{test_id: reason} from the TOML file: one table per module,
    '"Class.test_name" = "reason"'."""
    if not os.path.exists(path):
        return {}
    with open(path, 'rb') as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            die(f'{path}: {e}')
    out = {}
    for module, entries in data.items():
        if not isinstance(entries, dict):
            die(f'{path}: [{module}] must be a table')
        for rest, reason in entries.items():
            if not isinstance(reason, str) or not reason.strip():
                die(f'{path}: {module}.{rest}: a reason is required')
            out[f'{module}.{rest}'] = reason.strip()
    return out


def _toml_str(s):
    # A JSON string without ASCII escaping is a valid TOML basic string.
    return json.dumps(s, ensure_ascii=False)


HEADER = """\
# Tests of CPython's test.test_asyncio still expected to fail on PyLoop.
# One line per test: "Class.test_name" = "reason", grouped by module.
# A reason is required.  A reason starting with "flaky:" marks a test whose
# outcome is ignored (neither a new failure nor a stale entry).
# Regenerate with: python tests/conformance/run.py --update-expectations
# (existing reasons are kept; new entries get the exception as reason).
"""


def entry_reason(reason):
    """Reason for a new entry: the exception summary, minus a long trailing
    parenthetical ('... is not implemented yet (details...)')."""
    reason = (reason or 'failure').strip()
    if len(reason) > 80 and reason.endswith(')') and ' (' in reason:
        head = reason[:reason.rindex(' (')]
        if head.count('(') == head.count(')') and head.count('"') % 2 == 0 and len(head) > 20:
            reason = head
    if reason.endswith('...') and ' (' in reason:       # truncated parenthetical
        head = reason[:reason.rindex(' (')]
        if head.count('(') == head.count(')') and head.count('"') % 2 == 0 and len(head) > 20:
            reason = head
    return reason


def write_expectations(path, entries):
    by_module = {}
    for tid, reason in entries.items():
        module, _, rest = tid.partition('.')
        by_module.setdefault(module, {})[rest] = reason
    lines = [HEADER]
    for module in sorted(by_module):
        lines.append(f'\n[{module}]\n')
        for rest in sorted(by_module[module]):
            lines.append(f'{_toml_str(rest)} = {_toml_str(by_module[module][rest])}\n')
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.writelines(lines)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Comparison

def is_flaky(reason):
    return reason.lower().startswith('flaky:')


def classify(tests_a, tests_p, expected, have_asyncio):
    """Verdict per test id that ran on the loop under test."""
    verdicts = {}
    for tid, rp in tests_p.items():
        op = rp['outcome']
        ra = tests_a.get(tid)
        oa = ra['outcome'] if ra else None
        reason = expected.get(tid)
        if reason is not None and is_flaky(reason):
            verdicts[tid] = 'flaky'
        elif op in FAILING:
            if reason is not None:
                verdicts[tid] = 'expected'
            elif have_asyncio and oa in FAILING:
                verdicts[tid] = 'fails-on-asyncio-too'
            else:
                verdicts[tid] = 'NEW'
        elif op == 'passed':
            verdicts[tid] = 'STALE' if reason is not None else 'ok'
        else:
            verdicts[tid] = 'skipped'
    return verdicts


def counts(tests):
    c = {'passed': 0, 'failed': 0, 'error': 0, 'skipped': 0}
    for r in tests.values():
        c[r['outcome']] = c.get(r['outcome'], 0) + 1
    return c


# --------------------------------------------------------------------------
# Report

def fmt_side(res):
    if res is None:
        return f'{"":>5} {"":>5} {"":>5} {"":>5} {"":>7}'
    c = counts(res.tests)
    return (f'{c["passed"]:5d} {c["failed"]:5d} {c["error"]:5d} {c["skipped"]:5d} '
            f'{res.duration:6.1f}s')


def print_table(modules, results, sides, labels, verdicts_by_module, out):
    w = max([len(m) for m in modules] + [len('TOTAL')]) + 1
    cols = 'pass  fail   err  skip    time'
    head1 = f'{"":{w}}'
    head2 = f'{"module":{w}}'
    for s in sides:
        lab = labels[s]
        head1 += f' | {lab[:len(cols)]:^{len(cols)}}'
        head2 += f' | {cols}'
    if 'pyloop' in sides:
        head1 += ' |'
        head2 += ' | on-loop   new stale  note'
    print(head1, file=out)
    print(head2, file=out)
    print('-' * len(head2), file=out)
    tot = {s: {'passed': 0, 'failed': 0, 'error': 0, 'skipped': 0, 'time': 0.0} for s in sides}
    tot_new = tot_stale = tot_onloop = tot_ran = 0
    for m in modules:
        line = f'{m:{w}}'
        notes = []
        for s in sides:
            r = results.get((m, s))
            line += ' | ' + fmt_side(r)
            if r is not None:
                for k, v in counts(r.tests).items():
                    tot[s][k] = tot[s].get(k, 0) + v
                tot[s]['time'] += r.duration
                if r.status != 'ok':
                    notes.append(f'{s}:{r.status.upper()}')
                killed = sum(1 for n in r.notes if n.startswith(('killed', 'crash')))
                if killed:
                    notes.append(f'{s}:{killed} hung/crashed')
        if 'pyloop' in sides:
            rp = results.get((m, 'pyloop'))
            v = verdicts_by_module.get(m, {})
            new = sum(1 for x in v.values() if x == 'NEW')
            stale = sum(1 for x in v.values() if x == 'STALE')
            if rp is not None:
                ran = [t for t in rp.tests.values() if t['outcome'] != 'skipped']
                onloop = sum(1 for t in ran if t.get('loops'))
                onl = f'{onloop}/{len(ran)}'
                tot_onloop += onloop
                tot_ran += len(ran)
            else:
                onl = ''
            tot_new += new
            tot_stale += stale
            line += f' | {onl:>7} {new:5d} {stale:5d}  {" ".join(notes)}'
        elif notes:
            line += '  ' + ' '.join(notes)
        print(line, file=out)
    print('-' * len(head2), file=out)
    line = f'{"TOTAL":{w}}'
    for s in sides:
        t = tot[s]
        line += (f' | {t["passed"]:5d} {t["failed"]:5d} {t["error"]:5d} {t["skipped"]:5d} '
                 f'{t["time"]:6.0f}s')
    if 'pyloop' in sides:
        line += f' | {f"{tot_onloop}/{tot_ran}":>7} {tot_new:5d} {tot_stale:5d}'
    print(line, file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Run CPython's test.test_asyncio on PyLoop and asyncio's loop and compare.")
    ap.add_argument('--loop', choices=('asyncio', 'pyloop', 'both'), default='both',
                    help='which loop(s) to run the suite on (default: both)')
    ap.add_argument('--loop-factory', default=os.environ.get(FACTORY_ENV, DEFAULT_FACTORY),
                    metavar='MODULE:CALLABLE',
                    help=f'loop under test ("pyloop" side); default ${FACTORY_ENV} or '
                         f'{DEFAULT_FACTORY}. e.g. uvloop:new_event_loop')
    ap.add_argument('--modules', default='',
                    help='comma-separated subset, e.g. test_tasks,test_futures')
    ap.add_argument('-k', action='append', default=[], metavar='PATTERN',
                    help='only tests whose id matches (substring or fnmatch pattern); repeatable')
    ap.add_argument('-j', '--jobs', type=int, default=1, help='parallel child processes')
    ap.add_argument('--timeout', type=float, default=300.0,
                    help='time limit per module and loop, seconds (default 300)')
    ap.add_argument('--test-timeout', type=float, default=60.0,
                    help='a test making no progress this long is killed, recorded as '
                         "error 'timeout', and the module resumes after it (default 60; 0=off)")
    ap.add_argument('--expectations', default=DEFAULT_EXPECTATIONS,
                    help='expected-failures file (TOML)')
    ap.add_argument('--update-expectations', action='store_true',
                    help='rewrite the expectations file from this run')
    ap.add_argument('--skip-expected-hangs', action='store_true',
                    help='on the loop under test, do not run tests whose expected-failure '
                         "reason starts with 'timeout' (saves --test-timeout each in CI)")
    ap.add_argument('--out-dir', default=DEFAULT_OUT,
                    help='where results.json and per-module logs go')
    ap.add_argument('--json', default=None, help='JSON report path (default OUT_DIR/results.json)')
    ap.add_argument('--python', default=sys.executable,
                    help='interpreter for the children (default: this one)')
    ap.add_argument('--list', action='store_true', help='list modules and exit')
    ap.add_argument('--no-probe', action='store_true',
                    help='skip the loop-swap sanity check before the run')
    ap.add_argument('-q', '--quiet', action='store_true', help='no per-module progress lines')
    opts = ap.parse_args(argv)

    all_modules = discover_modules(opts.python)
    runnable = [m for m in all_modules if m not in adapters.EXCLUDED_MODULES]
    if opts.list:
        for m in all_modules:
            why = adapters.EXCLUDED_MODULES.get(m)
            extra = ' (adapted)' if m in adapters.ADAPTERS else ''
            print(f'{m:24} {"excluded: " + why if why else "run" + extra}')
        return 0
    if opts.modules:
        modules = [m.strip() for m in opts.modules.split(',') if m.strip()]
        modules = [m if m.startswith('test_') else f'test_{m}' for m in modules]
        unknown = [m for m in modules if m not in all_modules]
        if unknown:
            print(f'error: unknown module(s): {", ".join(unknown)}', file=sys.stderr)
            return 2
    else:
        modules = runnable

    sides = ['asyncio', 'pyloop'] if opts.loop == 'both' else [opts.loop]
    factories = {'asyncio': ASYNCIO_FACTORY, 'pyloop': opts.loop_factory}
    lab = 'pyloop' if opts.loop_factory == DEFAULT_FACTORY else opts.loop_factory
    if len(lab) > 30:
        lab = lab.split(':')[0][-30:]
    labels = {'asyncio': 'asyncio', 'pyloop': lab}
    os.makedirs(opts.out_dir, exist_ok=True)
    json_path = opts.json or os.path.join(opts.out_dir, 'results.json')
    if opts.update_expectations and 'pyloop' not in sides:
        print('error: --update-expectations needs the loop under test (--loop pyloop|both)',
              file=sys.stderr)
        return 2
    expected = load_expectations(opts.expectations) if 'pyloop' in sides else {}
    opts.hang_ids = sorted(t for t, r in expected.items()
                           if opts.skip_expected_hangs and '<' not in t
                           and r.lower().startswith('timeout'))

    # Sanity check: does the hook hand out the loop under test?
    probe = None
    if 'pyloop' in sides and not opts.no_probe:
        try:
            p = subprocess.run([opts.python, CHILD, '--probe', '--factory', opts.loop_factory],
                               capture_output=True, text=True, cwd=tempfile.gettempdir(),
                               timeout=120)
        except subprocess.TimeoutExpired as e:
            p = subprocess.CompletedProcess(e.cmd, 1, '', 'probe did not finish in 120s')
        if p.returncode != 0:
            print(f'error: cannot create a loop with {opts.loop_factory}:\n{p.stderr.strip()}\n'
                  'Is the package built and importable by this interpreter '
                  f'({opts.python})?  Use --loop asyncio to run asyncio\'s side only.',
                  file=sys.stderr)
            return 2
        probe = json.loads(p.stdout)
        print(f'loop under test: {opts.loop_factory}')
        for k, v in probe.items():
            if k != 'factory':
                print(f'  {k:48} -> {v}')

    jobs = [Job(m, s, factories[s]) for m in modules for s in sides]
    jobs.sort(key=lambda j: -ESTIMATES.get(j.module, 1))
    results = {}
    stop = threading.Event()
    t0 = time.monotonic()
    print(f'running {len(modules)} module(s) on {", ".join(labels[s] for s in sides)} '
          f'with -j {opts.jobs} (module limit {opts.timeout:.0f}s, '
          f'test limit {opts.test_timeout:.0f}s)', flush=True)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, opts.jobs))
    futs = {pool.submit(run_job, j, opts, stop): j for j in jobs}
    try:
        for i, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            r = fut.result()
            results[(r.module, r.side)] = r
            if not opts.quiet:
                c = counts(r.tests)
                extra = '' if r.status == 'ok' else f' [{r.status}]'
                print(f'[{i:3d}/{len(jobs)}] {r.side:7} {r.module:22} '
                      f'{c["passed"]:4d} passed {c["failed"]:3d} failed {c["error"]:3d} errors '
                      f'{c["skipped"]:3d} skipped {r.duration:6.1f}s{extra}', flush=True)
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        print('interrupted', file=sys.stderr)
        return 130
    pool.shutdown()
    wall = time.monotonic() - t0

    # Compare
    verdicts_by_module = {}
    all_verdicts = {}
    if 'pyloop' in sides:
        for m in modules:
            rp = results.get((m, 'pyloop'))
            ra = results.get((m, 'asyncio'))
            v = classify(ra.tests if ra else {}, rp.tests if rp else {}, expected,
                         'asyncio' in sides)
            verdicts_by_module[m] = v
            all_verdicts.update(v)

    print()
    print_table(sorted(modules), results, sides, labels, verdicts_by_module, sys.stdout)
    print(f'wall time {wall:.1f}s  (-j {opts.jobs})')

    new = sorted(t for t, v in all_verdicts.items() if v == 'NEW')
    stale = sorted(t for t, v in all_verdicts.items() if v == 'STALE')
    both = sorted(t for t, v in all_verdicts.items() if v == 'fails-on-asyncio-too')
    tests_p = {}
    for m in modules:
        if (m, 'pyloop') in results:
            tests_p.update(results[(m, 'pyloop')].tests)
    if 'pyloop' in sides:
        types = set()
        created = other = 0
        for m in modules:
            r = results.get((m, 'pyloop'))
            if r:
                created += r.loops_created
                other += r.other_loops
                types |= r.loop_types
        print(f'loop under test: {created} loops made by {opts.loop_factory} during tests '
              f'(types: {", ".join(sorted(types)) or "none"}); {other} asyncio loops made '
              'otherwise (TestLoop, custom policies, explicit classes)')
        print("  on-loop = tests that created at least one loop under test (the rest ran "
              "on asyncio's TestLoop or no loop)")
        if both:
            print(f'\n{len(both)} test(s) fail on both loops (environment; not counted):')
            for t in both[:30]:
                print(f'  {t}: {tests_p[t]["reason"]}')
            if len(both) > 30:
                print(f'  ... see {json_path}')
        if new:
            print(f'\n{len(new)} NEW failure(s) on {opts.loop_factory} '
                  '(not in expectations; pass on asyncio):')
            for t in new[:100]:
                print(f'  {t}: {tests_p[t]["reason"]}')
            if len(new) > 100:
                print(f'  ... {len(new) - 100} more in {json_path}')
        if stale:
            print(f'\n{len(stale)} STALE expectation(s) (now passing; remove them):')
            for t in stale:
                print(f'  {t}: {expected[t]}')

    elif 'asyncio' in sides:
        fails = []
        for m in modules:
            r = results.get((m, 'asyncio'))
            if r:
                fails += [(t, x['reason']) for t, x in r.tests.items() if x['outcome'] in FAILING]
        if fails:
            print(f'\n{len(fails)} test(s) fail on asyncio\'s own loop here:')
            for t, reason in sorted(fails)[:50]:
                print(f'  {t}: {reason}')

    # JSON report
    report = {
        'python': sys.version.split()[0],
        'interpreter': opts.python,
        'argv': sys.argv[1:] if argv is None else argv,
        'wall_time': round(wall, 2),
        'jobs': opts.jobs,
        'sides': {s: {'factory': factories[s]} for s in sides},
        'probe': probe,
        'expectations': opts.expectations if 'pyloop' in sides else None,
        'modules': {},
        'tests': {},
    }
    for (m, s), r in sorted(results.items()):
        report['modules'].setdefault(m, {})[s] = {
            'status': r.status, 'duration': round(r.duration, 2), 'attempts': r.attempts,
            'counts': counts(r.tests), 'loops_created': r.loops_created,
            'other_loops': r.other_loops, 'loop_types': sorted(r.loop_types),
            'notes': r.notes, 'log': r.log}
        for tid, t in r.tests.items():
            entry = report['tests'].setdefault(tid, {})
            entry[s] = {k: v for k, v in t.items() if v is not None}
    for tid, v in all_verdicts.items():
        report['tests'][tid]['verdict'] = v
        if tid in expected:
            report['tests'][tid]['expected_reason'] = expected[tid]
    report['summary'] = {
        'new_failures': new, 'stale_expectations': stale, 'fail_on_both': both,
    }
    with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=1, ensure_ascii=False, sort_keys=False)
    print(f'\nJSON report: {json_path}; logs: {os.path.join(opts.out_dir, "logs")}')

    if opts.update_expectations:
        updated = {}
        for tid, reason in expected.items():
            v = all_verdicts.get(tid)
            if v in (None, 'skipped', 'expected', 'flaky', 'fails-on-asyncio-too'):
                updated[tid] = reason       # still failing, flaky, or not run
            # 'STALE' (now passing) entries are dropped
        for tid in new:
            updated[tid] = entry_reason(tests_p[tid]['reason'])
        write_expectations(opts.expectations, updated)
        print(f'expectations: {opts.expectations}: {len(new)} added, {len(stale)} removed, '
              f'{len(updated)} total')
        return 0

    # A closing line in the form CI tools read: on the loop under test, tests that pass,
    # tests that fail against expectations (new failures plus stale entries), tests skipped
    # or expected to fail.
    under_test = 'pyloop' if 'pyloop' in sides else sides[0]
    passed = skipped = 0
    for (m, s), r in results.items():
        if s == under_test:
            c = counts(r.tests)
            passed += c['passed']
            skipped += c['skipped']
    print(f'conformance: {passed} passed, {len(new) + len(stale)} failed, '
          f'{skipped + sum(v in ("expected", "flaky") for v in all_verdicts.values())} skipped')
    if new or stale:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
