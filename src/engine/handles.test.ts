// Open files across copy-up and unlink: a file opened read-only on a lower
// layer reads (and fstat()s) the copied-up object after its copy-up, as in
// the kernel; an unlinked open file stays usable. The FUSE adapter passes a
// null path for an unlinked open file (hard_remove + nullpath_ok).
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { Handles } from './handles'
import { C, expectErrno, readHandle, readMerged, stack, useTmp, writeMerged } from './test-helpers'

useTmp()

describe('open files', () => {
  it('a lower file opened read-only reads the new data after another handle copies it up and writes', async () => {
    const s = await stack({ lowers: [{ f: 'old data' }] })
    const r = await s.engine.open('/f', C.O_RDONLY)
    expect(r.upper).toBe(false)
    expect(await readHandle(s.engine, r, '/f')).toBe('old data')
    const w = await s.engine.open('/f', C.O_WRONLY)
    const b = Buffer.from('NEW')
    await s.engine.write(w, b, 3, 0)
    expect(await readHandle(s.engine, r, '/f')).toBe('NEW data')
    await s.engine.write(w, Buffer.from('!!'), 2, 8)
    expect(await readHandle(s.engine, r, '/f')).toBe('NEW data!!')
    await s.engine.release(w)
    await s.engine.release(r)
    expect(s.engine.handles.size).toBe(0)
  })

  it('fstat through a read-only lower handle shows the copied-up file (new size, mode)', async () => {
    const s = await stack({ lowers: [{ f: 'old' }] })
    const r = await s.engine.open('/f', C.O_RDONLY)
    const ino = (await s.engine.fgetattr(r)).ino
    await writeMerged(s.engine, '/f', 'much longer data')
    await s.engine.chmod('/f', 0o600)
    const a = await s.engine.fgetattr(r)
    expect(a.ino).toBe(ino)
    expect(a.size).toBe(16)
    expect(a.mode & 0o7777).toBe(0o600)
    await s.engine.release(r)
  })

  it('after copy-up and unlink, a read-only lower handle still reads the copied-up data (null path)', async () => {
    const s = await stack({ lowers: [{ f: 'old data' }] })
    const r = await s.engine.open('/f', C.O_RDONLY)
    await writeMerged(s.engine, '/f', 'new data', 0, C.O_WRONLY | C.O_TRUNC)
    await s.engine.unlink('/f')
    expect(await readHandle(s.engine, r, null)).toBe('new data')
    await s.engine.release(r)
  })

  it('unlink of an open lower file keeps the handle readable', async () => {
    const s = await stack({ lowers: [{ f: 'lower' }] })
    const r = await s.engine.open('/f', C.O_RDONLY)
    await s.engine.unlink('/f')
    await expectErrno(s.engine.getattr('/f'), 'ENOENT')
    expect(await readHandle(s.engine, r, null)).toBe('lower')
    expect((await s.engine.fgetattr(r)).size).toBe(5)
    await s.engine.release(r)
  })

  it('unlink of an open upper file keeps the handle readable and writable', async () => {
    const s = await stack({ lowers: [{ f: 'lower' }] })
    const w = await s.engine.open('/f', C.O_RDWR)
    expect(w.upper).toBe(true)
    await s.engine.unlink('/f')
    await s.engine.write(w, Buffer.from('L'), 1, 0)
    expect(await readHandle(s.engine, w, null)).toBe('Lower')
    await s.engine.ftruncate(w, 2)
    expect((await s.engine.fgetattr(w)).size).toBe(2)
    await s.engine.release(w)
    await expectErrno(s.engine.getattr('/f'), 'ENOENT')
  })

  it('a handle keeps reading its file after a rename (path given is the new name)', async () => {
    const s = await stack({ lowers: [{ f: 'data' }] })
    const r = await s.engine.open('/f', C.O_RDONLY)
    await s.engine.rename('/f', '/g')
    expect(await readHandle(s.engine, r, '/g')).toBe('data')
    await s.engine.release(r)
  })

  it('open for write with O_TRUNC empties the file; O_APPEND appends', async () => {
    const s = await stack({ lowers: [{ f: 'abc', g: 'abc' }] })
    await s.engine.release(await s.engine.open('/f', C.O_WRONLY | C.O_TRUNC))
    expect(await readMerged(s.engine, '/f')).toBe('')
    const a = await s.engine.open('/g', C.O_WRONLY | C.O_APPEND)
    await s.engine.write(a, Buffer.from('d'), 1, 0)
    await s.engine.release(a)
    expect(await readMerged(s.engine, '/g')).toBe('abcd')
  })

  it('ftruncate through a read-only handle is refused; a released handle is gone', async () => {
    const s = await stack({ lowers: [{ f: 'abc' }] })
    const r = await s.engine.open('/f', C.O_RDONLY)
    await expectErrno(s.engine.ftruncate(r, 0), 'EBADF')
    await s.engine.release(r)
    expect(() => s.engine.handles.get(r.id)).toThrow(/EBADF/)
    expect(await readMerged(s.engine, '/f')).toBe('abc')
  })

  it('many handles on one file', async () => {
    const s = await stack({ lowers: [{ f: 'x'.repeat(100) }] })
    const hs = await Promise.all(Array.from({ length: 50 }, async () => await s.engine.open('/f', C.O_RDONLY)))
    expect(new Set(hs.map(h => h.id)).size).toBe(50)
    await writeMerged(s.engine, '/f', 'Y')
    for (const h of hs) expect((await readHandle(s.engine, h, '/f')).slice(0, 2)).toBe('Yx')
    await Promise.all(hs.map(async h => await s.engine.release(h)))
    expect(s.engine.handles.size).toBe(0)
  })

  it('a file created outside the engine (the addon\'s, patch item 25) is adopted by its handle: read, write, fstat, release', async () => {
    const s = await stack({ lowers: [{ d: { kind: 'dir', tree: {}, meta: {} } }] })
    const e = s.engine
    await e.mkdir('/d/n', 0o755, { uid: 0, gid: 0 })
    const fd = fs.openSync(s.up('/d/n/f'), fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644)
    const id = 2 ** 31 + 4096 * 3 + 7
    expect(await e.readdir('/d/n')).toEqual([expect.objectContaining({ name: 'f' })])
    e.adoptCreated('/d/n/f', id, fd, fs.constants.O_RDWR, fs.fstatSync(fd).ino)
    const h = e.handles.get(id)
    expect(await e.write(h, Buffer.from('abc'), 3, 0)).toBe(3)
    expect((await e.fgetattr(h)).size).toBe(3)
    expect((await e.getattr('/d/n/f')).ino).toBe(h.ino)
    await e.release(h)
    expect(await readMerged(e, '/d/n/f')).toBe('abc')
    await expectErrno(Promise.resolve().then(() => e.handles.get(id)), 'EBADF')
    // Ids add() gives (below 2^31), or one in use, are never adopted.
    const fd2 = fs.openSync(s.up('/d/n/f'), 'r')
    expect(() => new Handles().adopt(5, fd2, 0, '/x', 1)).toThrow(/cannot be adopted/)
    const t = new Handles()
    t.adopt(id, fd2, 0, '/x', 1)
    expect(() => t.adopt(id, fd2, 0, '/x', 1)).toThrow(/cannot be adopted/)
    fs.closeSync(fd2)
  })

  it('a handle released while a copy-up moves it: its fd is closed once, the new one not leaked (no fd of another file closed)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ovlfs-handles-race-'))
    try {
      const lower = path.join(dir, 'lower')
      const upper = path.join(dir, 'upper')
      const other = path.join(dir, 'other')
      for (const f of [lower, upper, other]) fs.writeFileSync(f, f)
      const handles = new Handles()
      const h = handles.add(fs.openSync(lower, 'r'), C.O_RDONLY, false, '/f', 1)
      const moving = handles.moveToUpper('/f', upper) // reopens on the pool: the release below comes first
      handles.remove(h.id)
      const released = h.fd
      fs.closeSync(released)
      const unrelated = fs.openSync(other, 'r') // most likely takes the released fd number
      await moving
      expect(fs.readFileSync(unrelated, 'utf8')).toBe(other) // still open: not closed a second time
      fs.closeSync(unrelated)
      const open = fs.readdirSync('/proc/self/fd').map(n => { try { return fs.readlinkSync(`/proc/self/fd/${n}`) } catch { return '' } })
      expect(open.filter(t => t === upper)).toEqual([]) // the reopened fd was closed, not leaked
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('an open whose name goes right after it (the re-check after registering the handle fails) still holds; one whose move to the copy fails leaves no handle', async () => {
    const s = await stack({ lowers: [{ f: 'lower data', g: 'g data' }] })
    const lookup = s.engine.lookup as unknown as { get: (p: string) => Promise<unknown> }
    const real = lookup.get.bind(lookup)
    // The second lookup of the open (its re-check) finds the name gone.
    let calls = 0
    lookup.get = async (p: string) => { if (++calls === 2) throw Object.assign(new Error('gone'), { code: 'ENOENT' }); return await real(p) }
    const h = await s.engine.open('/f', C.O_RDONLY)
    expect(await readHandle(s.engine, h, null)).toBe('lower data')
    await s.engine.release(h)
    expect(s.engine.handles.size).toBe(0)
    // The re-check finds a copy-up the open missed, and moving the handle to it fails: the open fails, nothing stays.
    lookup.get = real
    await s.engine.chmod('/g', 0o600)
    const handles = s.engine.handles as unknown as { moveToUpper: (p: string, u: string) => Promise<void>, holdMeta: (p: string, u: string) => Promise<void> }
    const fail = async (): Promise<void> => { throw Object.assign(new Error('no fd'), { code: 'EMFILE' }) }
    handles.moveToUpper = fail
    handles.holdMeta = fail
    const fds = fs.readdirSync('/proc/self/fd').length
    await expectErrno(s.engine.open('/g', C.O_RDONLY), 'EMFILE')
    expect(s.engine.handles.size).toBe(0)
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fds)
  })

  it('a create that fails after registering its handle leaves no handle and no fd', async () => {
    const s = await stack({ lowers: [{}] })
    const lookup = s.engine.lookup as unknown as { recordCreated: (...a: unknown[]) => object }
    const real = lookup.recordCreated.bind(lookup)
    // The step after registering the handle fails: the new node's st_ino is read once for the
    // handle, and its second read (for the answer's attributes) throws.
    lookup.recordCreated = (...a: unknown[]) => {
      let reads = 0
      return new Proxy(real(...a), {
        get (t, k) {
          if (k === 'ino' && ++reads === 2) throw Object.assign(new Error('late'), { code: 'EIO' })
          return (t as Record<string | symbol, unknown>)[k]
        },
      })
    }
    const fds = fs.readdirSync('/proc/self/fd').length
    await expectErrno(s.engine.create('/n', 0o644, C.O_WRONLY, { uid: 0, gid: 0 }), 'EIO')
    expect(s.engine.handles.size).toBe(0)
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fds)
  })
})
