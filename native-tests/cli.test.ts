// The ovlfs command-line contract (issue 2, "The command line"), checked by
// running the real command in child processes and mounting for real.
//
// The command under test is $OVLFS_CMD (split into words), by default
// `node dist/cli/main.js` — which must have been built: a missing build fails
// every test here, nothing is skipped. The mount(8) test uses the `ovlfs` on
// PATH (scripts/setup.sh puts it there). $OVLFS_FSTYPE overrides the expected
// fstype (default fuse.ovlfs), e.g. when trying a stand-in such as fuse-overlayfs.

import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import {
  type ExitInfo,
  type Fixture,
  type Run,
  type RunOptions,
  assertNativeTestPrerequisites,
  cliCommand,
  commandPath,
  errnoOf,
  expectedFstype,
  fusermountCmd,
  killAllRuns,
  makeFixture,
  mountAt,
  mountsAt,
  removeFixture,
  run,
  runCli,
  sh,
  sleep,
  unmountAllUnder,
  waitForMount,
} from './harness/cli'

let fx: Fixture
let haveFixture = false

// Checked before every test (not in beforeAll, which vitest would report as
// "skipped" tests): a missing build, FUSE or root fails each test loudly.
beforeEach(() => {
  assertNativeTestPrerequisites()
  cliCommand() // throws when the CLI is not built
  fx = makeFixture('cli')
  haveFixture = true
})

afterEach(async () => {
  if (!haveFixture) return
  haveFixture = false
  // unmount first so daemons can exit on their own, then kill what is left (our pids only)
  const left = unmountAllUnder(fx.root)
  await killAllRuns()
  removeFixture(fx)
  if (left.length) console.warn(`cli.test: unmounted leftovers: ${left.join(', ')}`)
})

// ---------------------------------------------------------------------------
// helpers

function lowerUpperWork(): string {
  return `lowerdir=${fx.lower1}:${fx.lower2},upperdir=${fx.upper},workdir=${fx.work}`
}

function describeExit(r: Run, e: ExitInfo | undefined): string {
  return `${r.describe()} -> ${e ? (e.signal !== null ? `signal ${e.signal}` : `exit ${e.code}`) : 'still running'}\nstderr:\n${r.stderr}`
}

function expectExit0(r: Run, e: ExitInfo): void {
  expect({ code: e.code, signal: e.signal }, describeExit(r, e)).toEqual({ code: 0, signal: null })
}

/** Mount with the daemonizing form; checks exit 0 and that the mount was live at return. */
async function mountDaemon(args: string[], mnt = fx.mnt, opts: RunOptions = {}): Promise<{ r: Run; daemon: number }> {
  const r = runCli(args, opts)
  const e = await r.waitMain()
  expectExit0(r, e)
  expect(mountAt(mnt, r.mountinfoAtMainExit ?? ''), `${mnt} must be mounted when ${r.describe()} returns`).not.toBeNull()
  const daemon = await r.findDaemon(mnt)
  return { r, daemon }
}

function read(rel: string): string {
  return fs.readFileSync(path.join(fx.mnt, rel), 'utf8')
}

function fusermountU(mnt = fx.mnt): void {
  const u = sh(fusermountCmd(), ['-u', mnt])
  expect(u.status, `fusermount -u ${mnt}: ${u.stderr}`).toBe(0)
}

function umount(mnt = fx.mnt): void {
  const u = sh('umount', [mnt])
  expect(u.status, `umount ${mnt}: ${u.stderr}`).toBe(0)
}

/** After an unmount: the daemon exits 0 and nothing is left running or mounted. */
async function expectDaemonExits0(r: Run, daemon: number, mnt = fx.mnt): Promise<void> {
  const e = await r.waitExit(daemon, 15_000)
  expectExit0(r, e)
  expect(mountAt(mnt), `${mnt} must be unmounted once the daemon exited`).toBeNull()
  await r.waitClosed()
}

/**
 * Bad input: exit 1, exactly one line on stderr, no stack trace, no mount,
 * nothing left running. `mention`: the line names at least one of these.
 */
async function expectBadInput(args: string[], mention: string[], opts: RunOptions = {}): Promise<Run> {
  const before = mountsAt(fx.mnt).length
  const r = runCli(args, opts)
  const e = await r.waitMain()
  if (e.code === 0) {
    // accepted: whatever it mounted is cleaned up in afterEach
    await sleep(200)
  } else {
    await r.waitClosed()
  }
  const lines = r.stderrLines()
  expect.soft(e.code, `bad input must exit 1: ${describeExit(r, e)}`).toBe(1)
  expect.soft(lines, `exactly one line on stderr for bad input; got:\n${r.stderr}`).toHaveLength(1)
  expect.soft(r.stderr, 'no stack trace').not.toMatch(/^\s+at\s|node:internal|\.js:\d+:\d+|\.ts:\d+:\d+/m)
  expect
    .soft(
      mention.some((m) => (lines[0] ?? '').includes(m)),
      `the error line should name one of ${JSON.stringify(mention)}; got: ${JSON.stringify(lines[0] ?? '')}`,
    )
    .toBe(true)
  expect.soft(mountsAt(fx.mnt).length, 'nothing may be mounted').toBe(before)
  return r
}

function makeTmpfs(): string {
  const dir = path.join(fx.root, 'tmpfs')
  fs.mkdirSync(dir)
  const m = sh('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dir])
  expect(m.status, `mount tmpfs: ${m.stderr}`).toBe(0)
  return dir
}

// ---------------------------------------------------------------------------

describe('mounting', () => {
  test('returns exit 0 only once the mount is live; leftmost lowerdir on top', async () => {
    const { r, daemon } = await mountDaemon(['-o', lowerUpperWork(), fx.mnt])
    expect(read('f')).toBe('top\n')
    expect(read('g')).toBe('only-lower2\n')
    expect(fs.readdirSync(fx.mnt).sort()).toEqual(['f', 'g', 'run.sh'])
    fs.writeFileSync(path.join(fx.mnt, 'new'), 'written\n')
    expect(fs.readFileSync(path.join(fx.upper, 'new'), 'utf8')).toBe('written\n')
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test(`the mount's fstype is ${expectedFstype()}`, async () => {
    const { r, daemon } = await mountDaemon(['-o', lowerUpperWork(), fx.mnt])
    expect.soft(mountAt(fx.mnt, r.mountinfoAtMainExit ?? '')?.fstype).toBe(expectedFstype())
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test('\\: escapes a colon in a lowerdir path', async () => {
    const esc = fx.colonDir.replace(/:/g, '\\:')
    const { r, daemon } = await mountDaemon(['-o', `lowerdir=${esc}:${fx.lower2}`, fx.mnt])
    expect(read('h')).toBe('colon\n')
    expect(read('g')).toBe('only-lower2\n')
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test('\\, escapes a comma in a lowerdir path', async () => {
    const comma = path.join(fx.root, 'c,d')
    fs.mkdirSync(comma)
    fs.writeFileSync(path.join(comma, 'k'), 'comma\n')
    const { r, daemon } = await mountDaemon(['-o', `lowerdir=${comma.replace(/,/g, '\\,')}:${fx.lower2}`, fx.mnt])
    expect(read('k')).toBe('comma\n')
    expect(read('g')).toBe('only-lower2\n')
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test('mount.fuse form: CMD SOURCE MOUNTPOINT -o OPTS', async () => {
    const { r, daemon } = await mountDaemon(['ovlfs', fx.mnt, '-o', lowerUpperWork()])
    expect(read('f')).toBe('top\n')
    expect(read('g')).toBe('only-lower2\n')
    umount()
    await expectDaemonExits0(r, daemon)
  })

  test('mount -t fuse.ovlfs ovlfs MNT -o lowerdir=... works through mount.fuse', async () => {
    const ovlfs = commandPath('ovlfs')
    if (!ovlfs) {
      throw new Error(
        'ovlfs is not on PATH: run scripts/setup.sh first (it links /usr/local/bin/ovlfs and /usr/sbin/ovlfs to dist/cli/main.js)',
      )
    }
    const r = run(['mount', '-t', 'fuse.ovlfs', 'ovlfs', fx.mnt, '-o', lowerUpperWork()])
    const e = await r.waitMain()
    expectExit0(r, e)
    const m = mountAt(fx.mnt, r.mountinfoAtMainExit ?? '')
    expect(m, 'mounted when mount(8) returns').not.toBeNull()
    expect(m?.fstype).toBe('fuse.ovlfs')
    expect(read('f')).toBe('top\n')
    expect(read('g')).toBe('only-lower2\n')
    const daemon = await r.findDaemon(fx.mnt)
    umount()
    await expectDaemonExits0(r, daemon)
  })
})

describe('mount options', () => {
  const generic = [
    'rw', 'ro', 'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec',
    'atime', 'noatime', 'relatime', 'allow_other', 'default_permissions',
  ]

  test('generic options are accepted silently', async () => {
    // order chosen so the last of each pair is the permissive one: the mount ends up rw
    const opts = ['ro', 'rw', 'nodev', 'dev', 'nosuid', 'suid', 'noexec', 'exec', 'atime', 'noatime', 'relatime', 'allow_other', 'default_permissions']
    expect(new Set(opts)).toEqual(new Set(generic))
    const { r, daemon } = await mountDaemon(['-o', `${lowerUpperWork()},${opts.join(',')}`, fx.mnt])
    expect(read('f')).toBe('top\n')
    expect.soft(r.stderr, 'generic options must not be warned about').toBe('')
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test('nosuid,nodev,noexec take effect; exec,dev,suid allow', async () => {
    const a = await mountDaemon(['-o', `${lowerUpperWork()},nosuid,nodev,noexec`, fx.mnt])
    const m = mountAt(fx.mnt)!
    expect(m.mountOptions).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noexec']))
    const denied = spawnSync(path.join(fx.mnt, 'run.sh'), { encoding: 'utf8' })
    expect((denied.error as NodeJS.ErrnoException | undefined)?.code, 'exec on a noexec mount').toBe('EACCES')
    fusermountU()
    await expectDaemonExits0(a.r, a.daemon)

    const b = await mountDaemon(['-o', `${lowerUpperWork()},suid,dev,exec`, fx.mnt])
    const m2 = mountAt(fx.mnt)!
    expect(m2.mountOptions).not.toContain('noexec')
    expect(m2.mountOptions).not.toContain('nosuid')
    expect(m2.mountOptions).not.toContain('nodev')
    const ran = spawnSync(path.join(fx.mnt, 'run.sh'), { encoding: 'utf8' })
    expect(ran.error).toBeUndefined()
    expect(ran.stdout).toBe('ran\n')
    fusermountU()
    await expectDaemonExits0(b.r, b.daemon)
  })

  test('ro: the mount is read-only and writes fail with EROFS', async () => {
    const { r, daemon } = await mountDaemon(['-o', `${lowerUpperWork()},ro`, fx.mnt])
    expect(mountAt(fx.mnt)!.mountOptions[0]).toBe('ro')
    expect(read('f')).toBe('top\n')
    expect(errnoOf(() => fs.writeFileSync(path.join(fx.mnt, 'new'), 'x'))).toBe('EROFS')
    expect(errnoOf(() => fs.writeFileSync(path.join(fx.mnt, 'f'), 'x'))).toBe('EROFS')
    expect(errnoOf(() => fs.mkdirSync(path.join(fx.mnt, 'd')))).toBe('EROFS')
    expect(errnoOf(() => fs.unlinkSync(path.join(fx.mnt, 'g')))).toBe('EROFS')
    expect(fs.readdirSync(fx.upper)).toEqual([])
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test('without upperdir the mount is read-only: writes fail with EROFS', async () => {
    const { r, daemon } = await mountDaemon(['-o', `lowerdir=${fx.lower1}:${fx.lower2}`, fx.mnt])
    expect(read('f')).toBe('top\n')
    expect(errnoOf(() => fs.writeFileSync(path.join(fx.mnt, 'new'), 'x'))).toBe('EROFS')
    expect(errnoOf(() => fs.appendFileSync(path.join(fx.mnt, 'f'), 'x'))).toBe('EROFS')
    expect(errnoOf(() => fs.mkdirSync(path.join(fx.mnt, 'd')))).toBe('EROFS')
    expect(errnoOf(() => fs.renameSync(path.join(fx.mnt, 'f'), path.join(fx.mnt, 'f2')))).toBe('EROFS')
    expect(errnoOf(() => fs.chmodSync(path.join(fx.mnt, 'f'), 0o600))).toBe('EROFS')
    expect(fs.readFileSync(path.join(fx.lower1, 'f'), 'utf8')).toBe('top\n')
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test.each(['squash_to_root', 'squash_to_uid=7', 'static_nlink', 'noacl', 'uidmapping=0:1000:1', 'gidmapping=0:1000:1', 'xattr_permissions=1', 'xattr_permissions=2'])(
    'fuse-overlayfs option %s is implemented: accepted silently',
    async (opt) => {
      const { r, daemon } = await mountDaemon(['-o', `${lowerUpperWork()},${opt}`, fx.mnt])
      expect(read('f')).toBe('top\n')
      fusermountU()
      await expectDaemonExits0(r, daemon)
      expect(r.stderr).toBe('')
    },
  )

  test.each(['fsync=1', 'fsync=0'])('fuse-overlayfs option %s is accepted silently (fsync=0 is volatile)', async (opt) => {
    const { r, daemon } = await mountDaemon(['-o', `${lowerUpperWork()},${opt}`, fx.mnt])
    expect(read('f')).toBe('top\n')
    fusermountU()
    await expectDaemonExits0(r, daemon)
    expect(r.stderr).toBe('')
  })

  test.each(['fast_ino=1', 'threaded=1', 'plugins=x'])(
    'fuse-overlayfs option %s is warned about, not fatal',
    async (opt) => {
      const { r, daemon } = await mountDaemon(['-o', `${lowerUpperWork()},${opt}`, fx.mnt])
      expect(read('f')).toBe('top\n')
      fusermountU()
      await expectDaemonExits0(r, daemon)
      const name = opt.split('=')[0]!
      expect(r.stderr, `a warning naming ${name} on stderr`).toContain(name)
    },
  )

  test('an option unknown even to fuse-overlayfs is warned about and ignored, as fuse-overlayfs does', async () => {
    const { r, daemon } = await mountDaemon(['-o', `${lowerUpperWork()},frobnicate_xyz=1`, fx.mnt])
    expect(read('f')).toBe('top\n')
    fusermountU()
    await expectDaemonExits0(r, daemon)
    expect(r.stderr).toContain('frobnicate_xyz')
  })
})

describe('process lifetime', () => {
  test('-f stays in the foreground until unmounted, then exits 0', async () => {
    const r = runCli(['-f', '-o', lowerUpperWork(), fx.mnt])
    await waitForMount(fx.mnt)
    const pid = await r.mainPid
    await sleep(500)
    expect(r.exits.has(pid), `-f must not return while mounted: ${describeExit(r, r.exits.get(pid))}`).toBe(false)
    expect(read('f')).toBe('top\n')
    fusermountU()
    const e = await r.waitMain(15_000)
    expectExit0(r, e)
    expect(mountAt(fx.mnt)).toBeNull()
    await r.waitClosed()
  })

  test('fusermount -u makes the daemon exit 0', async () => {
    const { r, daemon } = await mountDaemon(['-o', lowerUpperWork(), fx.mnt])
    fusermountU()
    await expectDaemonExits0(r, daemon)
  })

  test('umount makes the daemon exit 0', async () => {
    const { r, daemon } = await mountDaemon(['-o', lowerUpperWork(), fx.mnt])
    umount()
    await expectDaemonExits0(r, daemon)
  })

  test.each(['SIGTERM', 'SIGINT'] as const)('%s to the daemon unmounts cleanly and exits 0', async (sig) => {
    const { r, daemon } = await mountDaemon(['-o', lowerUpperWork(), fx.mnt])
    fs.writeFileSync(path.join(fx.mnt, 'new'), 'x')
    process.kill(daemon, sig)
    await expectDaemonExits0(r, daemon)
    expect(fs.readFileSync(path.join(fx.upper, 'new'), 'utf8')).toBe('x')
  })

  test('mount-image of a zero-layer image: its empty stand-in lowerdir is gone after the unmount', async () => {
    const docker = path.join(fx.root, 'docker')
    const made = sh(process.execPath, [path.join(__dirname, '..', 'scripts', 'make-docker-fixture.js'), docker, 'zero-layer'], 60_000)
    expect(made.status, `make-docker-fixture: ${made.stderr}`).toBe(0)
    const tmp = path.join(fx.root, 'tmp') // the stand-in is made under $TMPDIR: a private one, so only ours is seen
    fs.mkdirSync(tmp)
    const { r, daemon } = await mountDaemon(['mount-image', '--docker-root', docker, 'scratchy:1', fx.mnt], fx.mnt, { env: { ...process.env, TMPDIR: tmp } })
    const inTmp = fs.readdirSync(tmp)
    expect(inTmp.length, `one stand-in in ${tmp}: ${inTmp.join(' ')}`).toBe(1)
    expect(inTmp[0]).toMatch(/^ovlfs-empty-/)
    expect(fs.readdirSync(fx.mnt)).toEqual([])
    umount()
    await expectDaemonExits0(r, daemon)
    expect(fs.readdirSync(tmp), 'nothing left in $TMPDIR after a normal unmount').toEqual([])
  })

  test.each(['SIGTERM', 'SIGINT'] as const)('%s to a -f process unmounts cleanly and exits 0', async (sig) => {
    const r = runCli(['-f', '-o', lowerUpperWork(), fx.mnt])
    await waitForMount(fx.mnt)
    process.kill(await r.mainPid, sig)
    const e = await r.waitMain(15_000)
    expectExit0(r, e)
    expect(mountAt(fx.mnt)).toBeNull()
    await r.waitClosed()
  })
})

describe('bad input: exit 1 with one line on stderr', () => {
  test('missing lowerdir', async () => {
    const missing = path.join(fx.root, 'no-such-dir')
    await expectBadInput(['-o', `lowerdir=${missing},upperdir=${fx.upper},workdir=${fx.work}`, fx.mnt], [missing])
  })

  test('missing second lowerdir', async () => {
    const missing = path.join(fx.root, 'no-such-dir')
    await expectBadInput(['-o', `lowerdir=${fx.lower1}:${missing}`, fx.mnt], [missing])
  })

  test('lowerdir that is a regular file', async () => {
    const file = path.join(fx.lower1, 'f')
    await expectBadInput(['-o', `lowerdir=${file}`, fx.mnt], [file])
  })

  test('unreadable lowerdir (mode 000, no CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH)', async () => {
    const locked = path.join(fx.root, 'locked')
    fs.mkdirSync(locked, { mode: 0o000 })
    fs.chmodSync(locked, 0o000)
    expect(commandPath('setpriv'), 'setpriv (util-linux) is needed').not.toBeNull()
    await expectBadInput(['-o', `lowerdir=${locked}`, fx.mnt], [locked], {
      prefix: ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--'],
    })
  })

  test('no lowerdir option', async () => {
    await expectBadInput(['-o', `upperdir=${fx.upper},workdir=${fx.work}`, fx.mnt], ['lowerdir'])
  })

  test('no -o at all', async () => {
    await expectBadInput([fx.mnt], ['lowerdir'])
  })

  test('upperdir without workdir', async () => {
    await expectBadInput(['-o', `lowerdir=${fx.lower1},upperdir=${fx.upper}`, fx.mnt], ['workdir'])
  })

  test('workdir on another filesystem than upperdir', async () => {
    const t = makeTmpfs()
    const work = path.join(t, 'work')
    fs.mkdirSync(work)
    await expectBadInput(['-o', `lowerdir=${fx.lower1},upperdir=${fx.upper},workdir=${work}`, fx.mnt], [work, fx.upper])
  })

  test('workdir inside upperdir', async () => {
    const work = path.join(fx.upper, 'work')
    fs.mkdirSync(work)
    await expectBadInput(['-o', `lowerdir=${fx.lower1},upperdir=${fx.upper},workdir=${work}`, fx.mnt], [work, fx.upper])
  })

  test('upperdir inside workdir', async () => {
    const upper = path.join(fx.work, 'upper')
    fs.mkdirSync(upper)
    await expectBadInput(['-o', `lowerdir=${fx.lower1},upperdir=${upper},workdir=${fx.work}`, fx.mnt], [upper, fx.work])
  })

  test('upperdir equal to workdir', async () => {
    await expectBadInput(['-o', `lowerdir=${fx.lower1},upperdir=${fx.upper},workdir=${fx.upper}`, fx.mnt], [fx.upper])
  })

  test('mountpoint missing', async () => {
    const mnt = path.join(fx.root, 'no-such-mnt')
    await expectBadInput(['-o', lowerUpperWork(), mnt], [mnt])
  })

  test('fsync= other than 0 or 1', async () => {
    await expectBadInput(['-o', `${lowerUpperWork()},fsync=2`, fx.mnt], ['fsync='])
  })

  test('mountpoint busy (already a mount there)', async () => {
    const m = sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', fx.mnt])
    expect(m.status, `mount tmpfs: ${m.stderr}`).toBe(0)
    await expectBadInput(['-o', lowerUpperWork(), fx.mnt], [fx.mnt])
    expect(mountsAt(fx.mnt).map((e) => e.fstype)).toEqual(['tmpfs'])
  })
})

describe('logging', () => {
  test('quiet by default: nothing on stdout or stderr for a normal mount, use and unmount', async () => {
    const { r, daemon } = await mountDaemon(['-o', lowerUpperWork(), fx.mnt])
    fs.readdirSync(fx.mnt)
    read('f')
    fs.writeFileSync(path.join(fx.mnt, 'new'), 'x')
    fs.unlinkSync(path.join(fx.mnt, 'g'))
    fusermountU()
    await expectDaemonExits0(r, daemon)
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('')
  })

  test('-d prints per-operation debug lines as JSON on stderr (not a TTY)', async () => {
    const r = runCli(['-d', '-f', '-o', lowerUpperWork(), fx.mnt])
    await waitForMount(fx.mnt)
    fs.readdirSync(fx.mnt)
    read('f')
    fs.writeFileSync(path.join(fx.mnt, 'created'), 'x')
    fusermountU()
    expectExit0(r, await r.waitMain(15_000))
    await r.waitClosed()

    const lines = r.stderrLines()
    expect(lines.length, 'debug output expected').toBeGreaterThan(3)
    const parsed: Array<Record<string, unknown>> = []
    const bad: string[] = []
    for (const l of lines) {
      try {
        const v: unknown = JSON.parse(l)
        if (v && typeof v === 'object') parsed.push(v as Record<string, unknown>)
        else bad.push(l)
      } catch {
        bad.push(l)
      }
    }
    expect(bad.slice(0, 5), 'every stderr line must be a JSON object').toEqual([])
    expect(parsed.every((o) => 'msg' in o || 'op' in o), 'each line has msg or op').toBe(true)
    const ops = new Set(parsed.map((o) => o.op).filter((v): v is string => typeof v === 'string'))
    expect([...ops], 'per-operation lines name the FUSE operation in `op`').toEqual(
      expect.arrayContaining(['readdir', 'create']),
    )
  })

  test('a daemon logs to the kernel log when no --log-file is given, and a crash leaves its report there', async () => {
    const { r, daemon } = await mountDaemon(['--log-level', 'info', '-o', lowerUpperWork(), fx.mnt])
    expect(fs.readlinkSync(`/proc/${daemon}/fd/2`), "the daemon's stderr").toBe('/dev/kmsg')
    expect(await waitFor(() => kernelLog(daemon).includes(`ovlfs[${daemon}]: mounted mountpoint=${fx.mnt}`)), kernelLog(daemon)).toBe(true)
    await crashDaemon(daemon)
    const e = await r.waitExit(daemon, 15_000)
    expect(e.code, describeExit(r, e)).not.toBe(0)
    const log = kernelLog(daemon)
    expect(log).toContain(`ovlfs[${daemon}]: internal error (uncaughtException): the daemon stops; the mount answers ENOTCONN until unmounted (fusermount -u)`)
    expect(log).toContain(`ovlfs[${daemon}]: Error: crash on purpose`)
    expect(r.stderr, "nothing on the command's own stderr").toBe('')
    expect(errnoOf(() => fs.readdirSync(fx.mnt))).toBe('ENOTCONN')
    fusermountU()
  })

  test('--log-file: the daemon appends its log there, JSON lines, and a crash report with the stack', async () => {
    const file = path.join(fx.root, 'ovlfs.log')
    fs.writeFileSync(file, 'kept\n')
    const { r, daemon } = await mountDaemon(['--log-file', file, '--log-level', 'info', '-o', lowerUpperWork(), fx.mnt])
    expect(fs.readlinkSync(`/proc/${daemon}/fd/2`), "the daemon's stderr").toBe(file)
    expect(read('f')).toBe('top\n')
    await crashDaemon(daemon)
    const e = await r.waitExit(daemon, 15_000)
    expect(e.code, describeExit(r, e)).not.toBe(0)
    const lines = fs.readFileSync(file, 'utf8').split('\n')
    expect(lines[0], 'appended, not truncated').toBe('kept')
    const records = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(records.find((o) => o.msg === 'mounted'), JSON.stringify(records)).toMatchObject({ level: 30, pid: daemon, mountpoint: fx.mnt })
    const fatal = records.find((o) => o.level === 60)
    expect(fatal, JSON.stringify(records)).toMatchObject({ pid: daemon, msg: 'internal error (uncaughtException): the daemon stops; the mount answers ENOTCONN until unmounted (fusermount -u)' })
    expect(String(fatal?.stack)).toMatch(/^Error: crash on purpose\n\s+at /)
    expect(r.stderr).toBe('')
    fusermountU()
  })

  test('--log-file with -f: the log goes to the file, not to stderr; an unmount is logged', async () => {
    const file = path.join(fx.root, 'fg.log')
    const r = runCli(['-f', '--log-level=info', `--log-file=${file}`, '-o', lowerUpperWork(), fx.mnt])
    await waitForMount(fx.mnt)
    fusermountU()
    expectExit0(r, await r.waitMain(15_000))
    await r.waitClosed()
    expect(r.stderr).toBe('')
    const msgs = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg)
    expect(msgs).toEqual(expect.arrayContaining(['mounted', 'unmounted']))
  })

  test('a log file that cannot be opened is bad input', async () => {
    await expectBadInput(['--log-file', path.join(fx.root, 'no', 'such', 'dir', 'log'), '-o', lowerUpperWork(), fx.mnt], ['cannot open the log file'])
    await expectBadInput(['--log-file', '', '-o', lowerUpperWork(), fx.mnt], ['--log-file needs a file name'])
  })

})

/** The kernel's log lines of one daemon (`dmesg`), as text. */
function kernelLog(pid: number): string {
  const d = sh('dmesg', [])
  expect(d.status, `dmesg: ${d.stderr}`).toBe(0)
  return d.stdout.split('\n').filter((l) => l.includes(`ovlfs[${pid}]:`)).join('\n')
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) return false
    await sleep(100)
  }
  return true
}

/**
 * An internal error in the daemon, made without a hook in ovlfs: Node's own
 * debugger (`node inspect -p PID`, which SIGUSR1 opens) throws an exception
 * from a timer, which nothing catches.
 */
async function crashDaemon(pid: number): Promise<void> {
  const dbg = spawn(process.execPath, ['inspect', '-p', String(pid)], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  dbg.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
  dbg.stderr.setEncoding('utf8').on('data', (d: string) => (out += d))
  try {
    expect(await waitFor(() => /connecting to .* ok/.test(out) && out.includes('debug>'), 20_000), `node inspect -p ${pid}: ${out}`).toBe(true)
    dbg.stdin.write("exec setTimeout(() => { throw new Error('crash on purpose') }, 50), 'armed'\n")
    expect(await waitFor(() => out.includes("'armed'"), 10_000), `node inspect -p ${pid}: ${out}`).toBe(true)
    await sleep(300)
  } finally {
    dbg.kill('SIGKILL') // the daemon waits for its debugger to go before it exits
  }
}
