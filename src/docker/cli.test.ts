import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { CliError } from '../cli/errors'
import { layersCommand } from '../cli/layers'
import { escapeOptionPath, mountImageCommand, mountOptions } from '../cli/mount-image'
import { STAND_IN_ENV } from '../cli/stand-in'
import { fixtureSet, writeFixture } from './fixture'
import { humanSize, renderJson, renderTable, shortInstruction } from './render'
import { resolve } from './resolve'

const C1 = 'aad9b10fd6645ec91723233a237a1b8d1b652f947dbd93c655cbfc9cdedbe5d9'
const C2 = '0d268c9dc5270ed19f199c26e4e0d95e9c9d9699263aee894843bc8fca134673'
const C3 = '78d3866f54b2b416ad5567134c7f3189b661dab542917a1ebfdb0fbe89b72a47'
const C4 = '86a7f9bd60b1df7fc799b1a3f0006d72f49163cfd3f38051c565b0216fa6dd18'
const M = '7518056fea3709f00609f896954dbe47d2b5d8ac39366d45770caa7a9d3247b3'
const MYAPP_ID = 'sha256:2f9acc7740378eb7fb9e4abc5e2525c3f6ed5650a37bc570f5b16691c4008b22'

const parent = mkdtempSync(join(tmpdir(), 'ovlfs-cli-'))
const fixtures = fixtureSet(parent)
afterAll(() => rmSync(parent, { recursive: true, force: true }))

function capture (): { write: (text: string) => boolean, text: () => string } {
  let out = ''
  return { write: (text) => { out += text; return true }, text: () => out }
}

async function cliError (promise: Promise<unknown>): Promise<CliError> {
  let error: unknown
  try { await promise } catch (err) { error = err }
  expect(error).toBeInstanceOf(CliError)
  expect((error as CliError).message).not.toContain('\n')
  return error as CliError
}

describe('ovlfs layers --json', () => {
  const root = fixtures('base')
  const d = (id: string): string => join(root, 'overlay2', id, 'diff')

  it('prints exactly one object with the contract\'s keys (image)', async () => {
    const out = capture()
    expect(await layersCommand(['--docker-root', root, 'myapp:1.0', '--json'], { stdout: out })).toBe(0)
    const json = JSON.parse(out.text()) as Record<string, unknown>
    expect(Object.keys(json)).toEqual(['lowerdirs', 'image', 'layers'])
    expect(json).toEqual({
      lowerdirs: [d(C4), d(C3), d(C2), d(C1)],
      image: { id: MYAPP_ID, refs: ['myapp:1.0'] },
      layers: [
        { chainId: 'sha256:b1680d394125acc1c285f121f74bff3bede699694c5106db13644478f6d4e319', diffId: 'sha256:3c14f8c78e1f4c1aacd98b53d0431786205b57fd3a39bfce015def6756d51426', cacheId: C4, size: 2048, createdBy: '' },
        { chainId: 'sha256:cfe7832658f365d7c801e129bf863f77d0fb4f58a661e829d071d1cce3b60699', diffId: 'sha256:84647e3068feacc72f3645da3f4d71b44440d8d92d1e9d3c093a9c9d9b3dd908', cacheId: C3, size: 1024, createdBy: '' },
        { chainId: 'sha256:7c1d6339ab5385c7f7f4d9059d63813e96e7855220f05e36063f8e28350cc7b8', diffId: 'sha256:d8c4e306bcdf3ca401cee602e5a011de65451c3a6bd2a17fcc8e1602aedc9ade', cacheId: C2, size: 512, createdBy: '' },
        { chainId: 'sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d', diffId: 'sha256:f0ae072be7241b940fc2baf24c5a0fb5447ba321cb1b0954a9d50fa53ad9268d', cacheId: C1, size: 7340032, createdBy: '' }
      ]
    })
    for (const layer of json.layers as Array<Record<string, unknown>>) expect(Object.keys(layer)).toEqual(['chainId', 'diffId', 'cacheId', 'size', 'createdBy'])
  })

  it('adds upperdir and workdir, in order, for a container', async () => {
    const out = capture()
    await layersCommand([`--docker-root=${root}`, '--json', 'web'], { stdout: out })
    const json = JSON.parse(out.text()) as Record<string, unknown>
    expect(Object.keys(json)).toEqual(['lowerdirs', 'upperdir', 'workdir', 'image', 'layers'])
    expect(json.upperdir).toBe(join(root, 'overlay2', M, 'diff'))
    expect(json.workdir).toBe(join(root, 'overlay2', M, 'work'))
    expect(json.lowerdirs).toEqual([d(`${M}-init`), d(C4), d(C3), d(C2), d(C1)])
  })

  it('renderJson is a pure function of the stack', async () => {
    const stack = await resolve(root, 'nginx')
    expect(renderJson(stack)).toBe(renderJson(structuredClone(stack)))
    expect(renderJson(stack).endsWith('}\n')).toBe(true)
  })
})

describe('ovlfs layers (table)', () => {
  const root = fixtures('base')

  it('one row per layer, top first, with short IDs, sizes, instructions and a total', async () => {
    const out = capture()
    await layersCommand(['--docker-root', root, 'tools:2.1'], { stdout: out })
    const lines = out.text().trimEnd().split('\n')
    expect(lines[0]).toBe('image sha256:e0836d054d1c367a537bedb570c48f8d60849111778101fc8ab2ab0d62ee3761 (tools:2.1), overlay2')
    expect(lines[1]).toMatch(/^LAYER\s+CACHE ID\s+SIZE\s+CREATED BY$/)
    expect(lines.slice(2).map((line) => line.split(/\s{3,}/))).toEqual([
      [expect.stringMatching(/^[0-9a-f]{12}$/), expect.stringMatching(/^[0-9a-f]{12}$/), '12.3kB', 'COPY tool /usr/local/bin/tool # buildkit'],
      [expect.stringMatching(/^[0-9a-f]{12}$/), expect.stringMatching(/^[0-9a-f]{12}$/), '0B', 'WORKDIR /srv'],
      [expect.stringMatching(/^[0-9a-f]{12}$/), expect.stringMatching(/^[0-9a-f]{12}$/), '3.1MB', 'RUN /bin/sh -c apk add --no-cache curl # buildkit'],
      ['f0ae072be724', 'aad9b10fd664', '7.34MB', 'ADD file:4b1b2c3d in /'],
      ['total', '10.5MB', '4 layers']
    ])
  })

  it('names the container for a container', async () => {
    const out = capture()
    await layersCommand(['--docker-root', root, '5d3e'], { stdout: out })
    expect(out.text().split('\n')[1]).toBe(`container web (5d3edf8fd353), not running, upper ${join(root, 'overlay2', M, 'diff')}`)
  })

  it('human sizes like docker history', () => {
    expect([0, 512, 999, 1000, 2048, 7340032, 999_999, 12_345_678_901].map(humanSize)).toEqual(['0B', '512B', '999B', '1kB', '2.05kB', '7.34MB', '1MB', '12.3GB'])
    expect(shortInstruction('/bin/sh -c #(nop)  CMD ["sh"]')).toBe('CMD ["sh"]')
    expect(shortInstruction('')).toBe('-')
    expect(shortInstruction('x'.repeat(100))).toHaveLength(60)
  })

  it('renders a zero-layer image', async () => {
    const text = renderTable(await resolve(fixtures('zero-layer'), 'scratchy:1'))
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^total\s+0B\s+0 layers$/)
  })
})

describe('ovlfs layers: usage errors', () => {
  it.each([
    [[], 'expected exactly one REF'],
    [['a', 'b'], 'expected exactly one REF'],
    [['--bogus', 'nginx'], "Unknown option '--bogus'"],
    [['--docker-root'], "Option '--docker-root <value>' argument missing"]
  ])('%j', async (argv, text) => {
    const error = await cliError(layersCommand(argv, { stdout: capture() }))
    expect(error.message).toContain(text)
    expect(error.message).toContain('usage: ovlfs layers')
  })

  it('defaults to /var/lib/docker', async () => {
    const error = await cliError(layersCommand(['nginx'], { stdout: capture() }))
    expect(error.message).toContain('/var/lib/docker')
  })
})

describe('ovlfs mount-image', () => {
  const root = fixtures('base')
  const d = (id: string): string => join(root, 'overlay2', id, 'diff')

  function recorder (code = 0): { run: (args: string[], env: Record<string, string>) => Promise<number>, calls: string[][], envs: Array<Record<string, string>> } {
    const calls: string[][] = []
    const envs: Array<Record<string, string>> = []
    return { calls, envs, run: async (args, env) => { calls.push(args); envs.push(env); return code } }
  }

  it('mounts an image read-only', async () => {
    const rec = recorder()
    const out = capture()
    expect(await mountImageCommand(['--docker-root', root, 'nginx', '/mnt/x'], { run: rec.run, stdout: out })).toBe(0)
    expect(rec.calls).toEqual([['-o', `lowerdir=${d(C3)}:${d(C2)}:${d(C1)}`, '/mnt/x']])
    expect(rec.envs, 'no stand-in to remove').toEqual([{}])
    expect(out.text()).toBe('')
  })

  it('passes --log-level and --log-file (made absolute) on to the mount command', async () => {
    const rec = recorder()
    await mountImageCommand(['--docker-root', root, 'nginx', '/mnt/x', '--log-level', 'info', '--log-file', 'rel/ovlfs.log'], { run: rec.run, stdout: capture() })
    expect(rec.calls).toEqual([['--log-level', 'info', '--log-file', join(process.cwd(), 'rel/ovlfs.log'), '-o', `lowerdir=${d(C3)}:${d(C2)}:${d(C1)}`, '/mnt/x']])
  })

  it('--rw adds a new scratch upper/work and prints where', async () => {
    const rec = recorder()
    const out = capture()
    await mountImageCommand(['--docker-root', root, 'nginx', '/mnt/x', '--rw'], { run: rec.run, stdout: out })
    const scratch = out.text().trim()
    expect(scratch.startsWith(join(tmpdir(), 'ovlfs-scratch-'))).toBe(true)
    expect(readdirSync(scratch).sort()).toEqual(['upper', 'work'])
    expect(rec.calls[0]?.[1]).toBe(`lowerdir=${d(C3)}:${d(C2)}:${d(C1)},upperdir=${join(scratch, 'upper')},workdir=${join(scratch, 'work')}`)
    rmSync(scratch, { recursive: true })
  })

  it('--rw with --upper and --work uses them; one without the other is an error', async () => {
    const rec = recorder()
    await mountImageCommand(['--docker-root', root, 'nginx', '/mnt/x', '--rw', '--upper', '/u', '--work', '/w'], { run: rec.run, stdout: capture() })
    expect(rec.calls[0]?.[1]).toBe(`lowerdir=${d(C3)}:${d(C2)}:${d(C1)},upperdir=/u,workdir=/w`)
    expect((await cliError(mountImageCommand(['--docker-root', root, 'nginx', '/mnt/x', '--rw', '--upper', '/u'], { run: rec.run }))).message).toBe('--upper and --work go together: give both or neither')
  })

  it('a zero-layer image gets an empty directory as its only lowerdir, named to the daemon for removal after unmount', async () => {
    const rec = recorder()
    await mountImageCommand(['--docker-root', fixtures('zero-layer'), 'scratchy:1', '/mnt/x'], { run: rec.run, stdout: capture() })
    const lower = (rec.calls[0]?.[1] ?? '').replace(/^lowerdir=/, '')
    expect(lower.startsWith(join(tmpdir(), 'ovlfs-empty-'))).toBe(true)
    expect(readdirSync(lower)).toEqual([])
    expect(rec.envs).toEqual([{ [STAND_IN_ENV]: lower }])
    rmSync(lower, { recursive: true })
  })

  it('a zero-layer image whose mount fails leaves no stand-in behind', async () => {
    const rec = recorder(1)
    expect(await mountImageCommand(['--docker-root', fixtures('zero-layer'), 'scratchy:1', '/mnt/x'], { run: rec.run, stdout: capture() })).toBe(1)
    const lower = (rec.calls[0]?.[1] ?? '').replace(/^lowerdir=/, '')
    expect(lower.startsWith(join(tmpdir(), 'ovlfs-empty-'))).toBe(true)
    expect(existsSync(lower)).toBe(false)
  })

  it('a container mounts with its own upper and work dirs, as Docker mounts them (index=off, metacopy=off)', async () => {
    const rec = recorder()
    await mountImageCommand(['--docker-root', root, 'web', '/mnt/x'], { run: rec.run, stdout: capture() })
    const H = join(root, 'overlay2')
    expect(rec.calls[0]?.[1]).toBe(`lowerdir=${[d(`${M}-init`), d(C4), d(C3), d(C2), d(C1)].join(':')},upperdir=${join(H, M, 'diff')},workdir=${join(H, M, 'work')},index=off,metacopy=off`)
    expect((await cliError(mountImageCommand(['--docker-root', root, 'web', '/mnt/x', '--upper', '/u', '--work', '/w'], { run: rec.run }))).message).toContain('--upper/--work apply to images')
  })

  it('refuses a running container unless --force', async () => {
    const running = fixtures('running')
    const mountinfo = join(parent, 'mountinfo')
    writeFileSync(mountinfo, `1234 22 0:99 / ${join(running, 'overlay2', M, 'merged')} rw - overlay overlay rw\n`)
    const rec = recorder()
    const error = await cliError(mountImageCommand(['--docker-root', running, 'web', '/mnt/x'], { run: rec.run, mountinfo }))
    expect(error.exitCode).toBe(1)
    expect(error.message).toBe('container web (5d3edf8fd353) is running: Docker has its filesystem mounted, and a second writer on the same upper dir corrupts it; stop the container first, or pass --force')
    expect(rec.calls).toEqual([])
    expect(await mountImageCommand(['--docker-root', running, 'web', '/mnt/x', '--force'], { run: rec.run, mountinfo, stdout: capture() })).toBe(0)
    expect(rec.calls).toHaveLength(1)
  })

  it('forwards a failing exit code and removes the directories it made', async () => {
    const out = capture()
    expect(await mountImageCommand(['--docker-root', root, 'nginx', '/mnt/x', '--rw'], { run: recorder(1).run, stdout: out })).toBe(1)
    expect(existsSync(out.text().trim())).toBe(false)
  })

  it('vfs and aufs containers mount read-only (no separate work dir)', async () => {
    const rec = recorder()
    const vfs = fixtures('vfs')
    await mountImageCommand(['--docker-root', vfs, 'web', '/mnt/x'], { run: rec.run, stdout: capture() })
    expect(rec.calls[0]?.[1]).toBe(`lowerdir=${join(vfs, 'vfs', 'dir', M)}`)
    const aufs = fixtures('aufs')
    await mountImageCommand(['--docker-root', aufs, 'web', '/mnt/x'], { run: rec.run, stdout: capture() })
    const a = (id: string): string => join(aufs, 'aufs', 'diff', id)
    expect(rec.calls[1]?.[1]).toBe(`lowerdir=${[a(M), a(`${M}-init`), a(C4), a(C3), a(C2), a(C1)].join(':')}`)
  })

  it('escapes \\ : and , inside paths', async () => {
    expect(escapeOptionPath('/a\\b:c,d')).toBe('/a\\\\b\\:c\\,d')
    expect(mountOptions(['/x:1', '/y'], '/u,1', '/w\\1')).toBe('lowerdir=/x\\:1:/y,upperdir=/u\\,1,workdir=/w\\\\1')
    const odd = join(parent, 'odd:root,with\\chars')
    writeFixture(odd, 'base')
    const rec = recorder()
    await mountImageCommand(['--docker-root', odd, 'nginx', '/mnt/x'], { run: rec.run, stdout: capture() })
    const e = escapeOptionPath(odd)
    expect(rec.calls[0]?.[1]).toBe(`lowerdir=${[C3, C2, C1].map((id) => `${e}/overlay2/${id}/diff`).join(':')}`)
  })

  it('usage errors', async () => {
    expect((await cliError(mountImageCommand(['nginx'], {}))).message).toContain('expected REF and MOUNTPOINT')
    expect((await cliError(mountImageCommand(['--docker-root', root, 'nope', '/mnt/x'], {}))).message).toContain('no such image or container: "nope"')
  })
})
