// Image names and tags in a store, and snapshot ID prefixes, as a user meets them: push --image
// records a tag last (a push killed before its end leaves none), a tag moves when pushed again,
// revisions lists them, every command that takes --id takes --image (and a prefix of 8 hex digits or
// more), sync carries them (file and S3 stores), rm removes them, gc keeps what a tag names, and a
// malformed record is skipped with a warning.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ExitedFirst, ID_RE, bytes, killWhen, listFiles, manifest, snapdir, snapdirOk, tempDir } from '../helpers/cli.js'
import { startS3Server, type S3Server } from '../helpers/s3-server.js'

const APP = 'localhost:5000/team/app'
const APP_KEY = 'localhost%3A5000%2Fteam%2Fapp'

function dir(at: string, seed: string): string {
  mkdirSync(path.join(at, 'sub'), { recursive: true })
  writeFileSync(path.join(at, 'note.txt'), `note ${seed}\n`)
  writeFileSync(path.join(at, 'sub', 'data.bin'), bytes(seed, 120_000))
  return at
}

async function push(store: string, src: string, ...args: string[]): Promise<string> {
  const id = (await snapdirOk(['push', '--store', store, ...args, src])).trim()
  expect(id).toMatch(ID_RE)
  return id
}

interface Listed {
  id: string
  name: string
  images?: string[]
}

async function revisions(store: string, env?: NodeJS.ProcessEnv): Promise<Listed[]> {
  const out = await snapdirOk(['revisions', '--store', store], env ? { env } : {})
  return out.trim() === '' ? [] : out.trim().split('\n').map((l) => JSON.parse(l) as Listed)
}

describe('push --image', () => {
  it('records the tag after the revision; revisions lists it; the tag moves when pushed again', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'), '--image', `${APP}:1.0`, '--image', APP)
    expect(listFiles(path.join(store, 'refs', 'images'))).toEqual([`${APP_KEY}/1.0`, `${APP_KEY}/latest`])
    const record = JSON.parse(readFileSync(path.join(store, 'refs', 'images', APP_KEY, '1.0'), 'utf8')) as Record<string, string>
    expect(record).toMatchObject({ name: APP, tag: '1.0', id: a })
    expect(await revisions(store)).toMatchObject([{ id: a, name: APP, images: [`${APP}:1.0`, `${APP}:latest`] }])

    // the same tag pushed again names the new snapshot; the other stays
    const json = JSON.parse(await snapdirOk(['push', '--json', '--store', store, '--image', `${APP}:1.0`, dir(path.join(t, 'b'), 'b')])) as { id: string; images: string[] }
    expect(json.images).toEqual([`${APP}:1.0`])
    const b = json.id
    const listed = await revisions(store)
    expect(listed.map((r) => [r.id, r.images])).toEqual([
      [a, [`${APP}:latest`]],
      [b, [`${APP}:1.0`]],
    ])
    // a snapshot no tag names has no images field
    const c = await push(store, dir(path.join(t, 'c'), 'c'))
    expect((await revisions(store)).find((r) => r.id === c)).not.toHaveProperty('images')
  })

  it('a malformed name: exit 2 naming it, before anything is stored', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const r = await snapdir(['push', '--store', store, '--image', 'Team/App:1', dir(path.join(t, 'a'), 'a')])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/^snapdir: malformed image name "Team\/App:1": .*\n$/)
    expect(existsSync(store)).toBe(false)
  })

  it('a push killed after its revision, before its tag, leaves no tag', async () => {
    const records = (dir: string) => listFiles(dir).filter((f) => !path.basename(f).includes('.tmp-'))
    const t = tempDir()
    const src = dir(path.join(t, 'src'), 'killed')
    // killed as soon as the revision or the tag is there: the tag must not be there without the
    // revision. Landing between the two is the premise (a push on an idle machine can outrun the kill).
    let landed = false
    for (let attempt = 1; attempt <= 8 && !landed; attempt++) {
      const store = path.join(t, `store${attempt}`)
      const revs = path.join(store, 'refs', 'revisions')
      const tags = path.join(store, 'refs', 'images')
      try {
        // records as the store has them, not a writer's temporary file before its rename
        await killWhen(['push', '--store', store, '--image', `${APP}:1`, src], () => records(revs).length > 0 || records(tags).length > 0)
      } catch (err) {
        if (err instanceof ExitedFirst) continue
        throw err
      }
      const revisionThere = records(revs).length > 0
      const tagThere = records(tags).length > 0
      if (tagThere) expect(revisionThere, 'a tag written before its revision').toBe(true)
      if (!revisionThere || tagThere) continue
      landed = true
      const [listed] = await revisions(store)
      expect(listed).not.toHaveProperty('images')
      const r = await snapdir(['verify', '--store', store, '--image', `${APP}:1`])
      expect(r.status).toBe(2)
      // pushed again, it completes with its tag
      const id = await push(store, src, '--image', `${APP}:1`)
      expect(await snapdirOk(['verify', '--store', store, '--image', `${APP}:1`])).toMatch(/ 0 damaged/)
      expect(listed!.id).toBe(id)
    }
    expect(landed, 'the kill never landed between the revision and the tag in 8 pushes').toBe(true)
  })
})

describe('--image and ID prefixes wherever a snapshot is named', () => {
  it('pull, verify, diff, stats and sync take --image (or NAME:TAG) and prefixes; unknown ones are exit 2 naming the store', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const src = dir(path.join(t, 'a'), 'a')
    const a = await push(store, src, '--image', `${APP}:1`)
    const b = await push(store, dir(path.join(t, 'b'), 'b'), '--image', `${APP}:2`)

    await snapdirOk(['pull', '--store', store, '--image', `${APP}:1`, path.join(t, 'out1')])
    expect(manifest(path.join(t, 'out1'))).toBe(manifest(src))
    await snapdirOk(['pull', '--store', store, '--id', a.slice(0, 8), path.join(t, 'out2')])
    expect(manifest(path.join(t, 'out2'))).toBe(manifest(src))
    expect(await snapdirOk(['verify', '--store', store, '--image', `${APP}:2`])).toMatch(/ 0 damaged/)
    expect(await snapdirOk(['verify', '--store', store, '--id', b.slice(0, 12).toUpperCase()])).toMatch(/ 0 damaged/)
    const d = JSON.parse(await snapdirOk(['diff', '--json', '--store', store, `${APP}:1`, b.slice(0, 9)])) as { from: string; to: string }
    expect([d.from, d.to]).toEqual([a, b])

    const copy = path.join(t, 'copy')
    await snapdirOk(['sync', '--image', `${APP}:2`, '--id', a.slice(0, 10), '--from', store, '--to', copy])
    expect((await revisions(copy)).map((r) => [r.id, r.images])).toEqual([
      [a, [`${APP}:1`]],
      [b, [`${APP}:2`]],
    ])

    for (const args of [
      ['pull', '--store', store, '--image', `${APP}:3`, path.join(t, 'out3')],
      ['verify', '--store', store, '--image', `${APP}:3`],
      ['diff', '--store', store, `${APP}:3`, a],
      ['stats', '--store', store, `${APP}:3`],
      ['sync', '--image', `${APP}:3`, '--from', store, '--to', path.join(t, 'none')],
      ['rm', '--store', store, '--image', `${APP}:3`],
    ]) {
      const r = await snapdir(args)
      expect(r.status, args.join(' ')).toBe(2)
      expect(r.stderr).toBe(`snapdir: no image ${APP}:3 in ${store} (snapdir revisions lists the names it records)\n`)
    }
    expect(existsSync(path.join(t, 'out3'))).toBe(false)
    expect(existsSync(path.join(t, 'none'))).toBe(false)
    const both = await snapdir(['verify', '--store', store, '--id', a, '--image', `${APP}:1`])
    expect(both.status).toBe(2)
    expect(both.stderr).toBe('snapdir: give --id or --image, not both\n')
  })

  it('a prefix shorter than 8 is a usage error; none or several matching: exit 2 naming the store and the candidates', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'))
    for (const cmd of [['verify', '--id'], ['pull', '--id'], ['mount', '--id'], ['rm'], ['diff', a]]) {
      const r = await snapdir([...cmd, a.slice(0, 7), '--store', store, ...(cmd[0] === 'pull' || cmd[0] === 'mount' ? [path.join(t, 'x')] : [])])
      expect(r.status, cmd.join(' ')).toBe(2)
      expect(r.stderr, cmd.join(' ')).toBe(`snapdir: snapshot ID prefix '${a.slice(0, 7)}' is too short: give at least 8 hex digits\n`)
    }
    const other = (a.startsWith('0') ? '1' : '0').repeat(8)
    const none = await snapdir(['verify', '--store', store, '--id', other])
    expect(none.status).toBe(2)
    expect(none.stderr).toBe(`snapdir: no snapshot with ID prefix ${other} in ${store} (snapdir revisions lists them)\n`)
    // Two snapshots whose IDs share 8 hex digits take ~65,000 pushes to meet; a second root object
    // under such a name stands in for one (the lookup reads names only)
    const twin = a.slice(0, 8) + (a[8] === '0' ? '1' : '0') + a.slice(9)
    const root = path.join(store, 'trees', a.slice(0, 2))
    writeFileSync(path.join(root, twin), readFileSync(path.join(root, a)))
    const [first, second] = [a, twin].sort()
    const r = await snapdir(['verify', '--store', store, '--id', a.slice(0, 8)])
    expect(r.status).toBe(2)
    expect(r.stderr).toBe(`snapdir: snapshot ID prefix ${a.slice(0, 8)} is ambiguous in ${store}: it begins ${first}, ${second}; give more digits\n`)
    expect(await snapdirOk(['verify', '--store', store, '--id', a.slice(0, 10)])).toMatch(/ 0 damaged/)
  })
})

describe('rm and gc with tags', () => {
  it('rm --image untags while another tag names the snapshot, and takes the snapshot with its last tag', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'), '--image', `${APP}:1`, '--image', `${APP}:stable`)
    const b = await push(store, dir(path.join(t, 'b'), 'b'), '--image', `${APP}:2`)
    expect(await snapdirOk(['rm', '--store', store, '--image', `${APP}:stable`])).toBe(`untagged ${APP}:stable ${a}\n`)
    expect((await revisions(store)).map((r) => [r.id, r.images])).toEqual([
      [a, [`${APP}:1`]],
      [b, [`${APP}:2`]],
    ])
    expect(await snapdirOk(['verify', '--store', store, '--id', a])).toMatch(/ 0 damaged/)

    const out = await snapdirOk(['rm', '--store', store, '--image', `${APP}:1`])
    expect(out).toMatch(new RegExp(`^untagged ${APP}:1 ${a}\\nremoved ${a} ${APP} `))
    expect((await revisions(store)).map((r) => r.id)).toEqual([b])
    expect(existsSync(path.join(store, 'trees', a.slice(0, 2), a))).toBe(false)

    // rm of an ID (by prefix) takes the tags naming it
    expect(await snapdirOk(['rm', '--store', store, b.slice(0, 8)])).toMatch(new RegExp(`^untagged ${APP}:2 ${b}\\nremoved ${b} `))
    expect(listFiles(path.join(store, 'refs', 'images'))).toEqual([])
  })

  it('gc keeps a tagged snapshot: its revisions through --keep-last, and the snapshot even with no revision', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const src = path.join(t, 'src')
    const ids: string[] = []
    for (const seed of ['one', 'two', 'three']) {
      rmSync(src, { recursive: true, force: true })
      ids.push(await push(store, dir(src, seed), '--name', 'app', ...(seed === 'one' ? ['--image', `${APP}:old`] : [])))
    }
    const report = JSON.parse(await snapdirOk(['gc', '--store', store, '--json', '--grace', '0', '--keep-last', '1'])) as { removedRevisions: Array<{ id: string }> }
    expect(report.removedRevisions.map((r) => r.id)).toEqual([ids[1]])
    expect((await revisions(store)).map((r) => r.id)).toEqual([ids[0], ids[2]])
    expect(await snapdirOk(['verify', '--store', store, '--image', `${APP}:old`])).toMatch(/ 0 damaged/)
    const r = await snapdir(['verify', '--store', store, '--id', ids[1]!])
    expect(r.status).toBe(1)

    // a tag is a root of its own: with its revision gone (moved aside here), gc still keeps the snapshot
    const revs = path.join(store, 'refs', 'revisions')
    const record = listFiles(revs).find((f) => f.includes(ids[0]!.slice(0, 16)))!
    renameSync(path.join(revs, record), path.join(t, 'aside.json'))
    await snapdirOk(['gc', '--store', store, '--grace', '0'])
    expect(await snapdirOk(['verify', '--store', store, '--image', `${APP}:old`])).toMatch(/ 0 damaged/)
  })
})

describe('a malformed record under refs/images/', () => {
  it('is skipped with a warning naming it; the others still resolve', async () => {
    const t = tempDir()
    const store = path.join(t, 'store')
    const a = await push(store, dir(path.join(t, 'a'), 'a'), '--image', `${APP}:1`)
    const images = path.join(store, 'refs', 'images')
    mkdirSync(path.join(images, 'junk'), { recursive: true })
    writeFileSync(path.join(images, 'junk', 'truncated'), '{"name": "ju')
    writeFileSync(path.join(images, 'junk', 'elsewhere'), JSON.stringify({ name: 'other', tag: 'elsewhere', id: a, created_at: 'x' }) + '\n')
    writeFileSync(path.join(images, APP_KEY, 'noid'), JSON.stringify({ name: APP, tag: 'noid', id: 'abc', created_at: 'x' }) + '\n')
    const r = await snapdir(['revisions', '--store', store])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toMatch(new RegExp(`^snapdir: warning: skipping ${store}/refs/images/junk/truncated: not JSON$`, 'm'))
    expect(r.stderr).toMatch(new RegExp(`^snapdir: warning: skipping ${store}/refs/images/junk/elsewhere: its name other:elsewhere is not the one its key spells$`, 'm'))
    expect(r.stderr).toMatch(new RegExp(`^snapdir: warning: skipping ${store}/refs/images/${APP_KEY}/noid: "id" is not a snapshot ID$`, 'm'))
    expect((JSON.parse(r.stdout) as Listed).images).toEqual([`${APP}:1`])
    expect(await snapdirOk(['verify', '--store', store, '--image', `${APP}:1`])).toMatch(/ 0 damaged/)
    const bad = await snapdir(['verify', '--store', store, '--image', `${APP}:noid`])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toMatch(/warning: skipping .*noid: "id" is not a snapshot ID\nsnapdir: no image /)
    // sync goes on past them too; gc does not: what an unreadable record keeps is unknown, so it deletes
    // nothing and names the records until they are repaired or removed
    const held = await snapdir(['gc', '--store', store, '--grace', '0'])
    expect(held.status).toBe(1)
    expect(held.stderr).toMatch(/gc: a record under refs\/ cannot be read.*refs\/images\/junk\/.* and 2 more; repair or delete it/)
    expect(await snapdirOk(['verify', '--store', store, '--image', `${APP}:1`])).toMatch(/ 0 damaged/)
    await snapdirOk(['sync', '--id', a, '--from', store, '--to', path.join(t, 'copy')])
    expect((await revisions(path.join(t, 'copy'))).map((x) => x.images)).toEqual([[`${APP}:1`]])
  })
})

describe('names on S3 (s3rver)', () => {
  let server: S3Server
  beforeAll(async () => {
    server = await startS3Server(['names'])
  })
  afterAll(async () => {
    await server.close()
  })

  it('push --image to S3, resolve there, sync carries the tags both ways and moves a tag at the destination', async () => {
    const t = tempDir()
    const env = server.env
    const s3 = 's3://names/team'
    const src = dir(path.join(t, 'a'), 'a')
    const a = (await snapdirOk(['push', '--store', s3, '--image', `${APP}:1`, '--image', 'Registry.Example/app:V1', src], { env })).trim()
    expect(await snapdirOk(['verify', '--store', s3, '--image', 'Registry.Example/app:V1'], { env })).toMatch(/ 0 damaged/)
    expect(await snapdirOk(['verify', '--store', s3, '--id', a.slice(0, 8)], { env })).toMatch(/ 0 damaged/)

    const local = path.join(t, 'local')
    await snapdirOk(['sync', '--id', a, '--from', s3, '--to', local], { env })
    expect(listFiles(path.join(local, 'refs', 'images'))).toEqual(['%52egistry.%45xample%2Fapp/%561', `${APP_KEY}/1`])
    await snapdirOk(['pull', '--store', local, '--image', 'Registry.Example/app:V1', path.join(t, 'out')])
    expect(manifest(path.join(t, 'out'))).toBe(manifest(src))

    // a new snapshot tagged :1 locally, synced to S3: the tag there moves to it
    const b = await push(local, dir(path.join(t, 'b'), 'b'), '--image', `${APP}:1`)
    const out = await snapdirOk(['sync', '--id', b, '--from', local, '--to', s3], { env })
    expect(out).toMatch(new RegExp(`; tagged ${APP}:1\\n$`))
    const there = await revisions(s3, env)
    expect(there.map((r) => [r.id, r.images ?? []])).toEqual([
      [a, ['Registry.Example/app:V1']],
      [b, [`${APP}:1`]],
    ])
    // a snapshot complete at the destination still gets a tag it lacks there
    await snapdirOk(['push', '--store', s3, '--image', `${APP}:copied`, src], { env })
    const again = await snapdirOk(['sync', '--image', `${APP}:copied`, '--from', s3, '--to', local], { env })
    expect(again).toBe(`${a} is already complete in ${local}; tagged ${APP}:copied\n`)
    expect(await snapdirOk(['verify', '--store', local, '--image', `${APP}:copied`])).toMatch(/ 0 damaged/)
  })
})
