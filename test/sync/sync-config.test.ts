// The sync config file: what a good one reads as, and for each kind of mistake the one line that says
// where it is (file, line, field) and what was expected.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { ConfigError, loadSyncConfig, parseSyncConfig } from '../../src/sync/sync-config.js'
import { tempDir } from '../helpers/temp.js'

const GOOD = `
version: 1
x-tags: &release
  semver: ['>=1.2 <2']
  exclude: ['.*-rc\\d*']
defaults:
  jobs: 3
  platforms: [linux/amd64]
registries:
  localhost:5000:
    tls: disabled
  reg.example.org:
    username: sync
    passwordEnv: REG_PASS
  ghcr.io:
    dockerConfig: ./docker/config.json
sync:
  - source: docker://localhost:5000/app
    targets: [docker://reg.example.org/mirror/app, ./store]
    tags:
      <<: *release
      names: [latest]
      regex: ['v\\d+']
  - source: docker://localhost:5000/base:12
    target: docker://reg.example.org/base:stable
    platforms: [linux/arm64/v8]
  - source: s3://bucket/images
    ids: ['${'a'.repeat(64)}']
    target: /srv/store
`

describe('a good config', () => {
  test('YAML: sources, targets, tags, platforms, registries', () => {
    const t = tempDir()
    mkdirSync(path.join(t, 'docker'))
    writeFileSync(path.join(t, 'docker', 'config.json'), '{}')
    const c = parseSyncConfig(GOOD, path.join(t, 'sync.yaml'), { REG_PASS: 's3cret' })
    expect(c.jobs).toBe(3)
    expect(c.registries.get('localhost:5000')).toEqual({ host: 'localhost:5000', tls: 'disabled' })
    expect(c.registries.get('reg.example.org')).toEqual({ host: 'reg.example.org', username: 'sync', password: 's3cret' })
    expect(c.registries.get('ghcr.io')?.dockerConfig).toBe(path.join(t, 'docker', 'config.json'))
    const [a, b, s] = c.entries
    expect(a!.source).toMatchObject({ kind: 'registry', host: 'localhost:5000', repository: 'app' })
    expect(a!.targets.map((t) => t.kind)).toEqual(['registry', 'store'])
    expect(a!.targets[1]).toMatchObject({ kind: 'store', url: path.join(t, 'store') })
    expect(a!.tags?.names).toEqual(['latest'])
    expect(a!.tags?.semver).toEqual(['>=1.2 <2'])
    expect(a!.tags?.regex.map(String)).toEqual(['/^(?:v\\d+)$/u'])
    expect(a!.platforms).toEqual([{ os: 'linux', architecture: 'amd64' }])
    expect(b!.source).toMatchObject({ tag: '12' })
    expect(b!.targets[0]).toMatchObject({ repository: 'base', tag: 'stable' })
    expect(b!.platforms).toEqual([{ os: 'linux', architecture: 'arm64', variant: 'v8' }])
    expect(s!.source).toMatchObject({ kind: 'store', url: 's3://bucket/images' })
    expect(s!.ids).toEqual(['a'.repeat(64)])
  })

  test('docker://alpine is Docker Hub, as docker and skopeo read it', () => {
    const c = parseSyncConfig('sync: [{source: docker://alpine, target: /x}]', 'f.yaml')
    expect(c.entries[0]!.source).toMatchObject({ kind: 'registry', host: 'docker.io', repository: 'library/alpine' })
  })

  test('JSON, tab-indented', () => {
    const c = parseSyncConfig('{\n\t"sync": [\n\t\t{"source": "docker://h:1/a@sha256:' + 'b'.repeat(64) + '", "target": "/x"}\n\t]\n}\n', 'sync.json')
    expect(c.entries[0]!.source).toMatchObject({ host: 'h:1', repository: 'a', digest: `sha256:${'b'.repeat(64)}` })
  })

  test('passwordFile is read relative to the file, its trailing newline dropped', () => {
    const t = tempDir()
    mkdirSync(path.join(t, 'secrets'))
    writeFileSync(path.join(t, 'secrets', 'pw'), 'hunter2\n')
    writeFileSync(path.join(t, 'sync.yaml'), 'registries:\n  h:5000:\n    username: u\n    passwordFile: secrets/pw\nsync: [{source: docker://h:5000/a, target: docker://h:5000/b}]\n')
    expect(loadSyncConfig(path.join(t, 'sync.yaml')).registries.get('h:5000')?.password).toBe('hunter2')
  })
})

// [what, file text, the line expected (a regex on the whole message)]
const BAD: Array<[string, string, RegExp]> = [
  ['not YAML', 'sync:\n  - source: docker://x/y\n   target: a\n', /^f\.yaml:3:1: not valid YAML or JSON: /],
  ['a duplicate key', 'sync: []\nsync: []\n', /^f\.yaml:2:1: not valid YAML or JSON: Map keys must be unique/],
  ['an empty file', '', /^f\.yaml: \(top level\): expected a mapping with a `sync:` list, got null$/],
  ['no sync list', 'version: 1\n', /^f\.yaml:1: sync: missing; expected a `sync:` list/],
  ['an unknown top-level key', 'sinc: []\n', /^f\.yaml:1: sinc: unexpected key; expected one of the keys version, defaults, registries, sync/],
  ['version 2', 'version: 2\nsync: []\n', /^f\.yaml:1: version: expected version 1 .*, got number 2$/],
  ['an empty sync list', 'sync: []\n', /^f\.yaml:1: sync: expected at least one entry, got a list of 0$/],
  ['an unknown entry key', 'sync:\n  - source: docker://h/a\n    target: /x\n    tagz: {}\n', /^f\.yaml:4: sync\[0\]\.tagz: unexpected key; expected one of the keys source, target, targets/],
  ['no target', 'sync:\n  - source: docker://h/a\n', /^f\.yaml:2: sync\[0\]\.target: missing; expected a target \(or targets, a list\)$/],
  ['target and targets', 'sync:\n  - source: docker://h/a\n    target: /x\n    targets: [/y]\n', /^f\.yaml:4: sync\[0\]\.targets: expected target \(one\) or targets \(a list\), not both/],
  ['no source', 'sync:\n  - target: /x\n', /^f\.yaml:2: sync\[0\]\.source: missing; expected a source$/],
  ['a bad tag', 'sync:\n  - source: docker://h.example/app:-x\n    target: /x\n', /^f\.yaml:2: sync\[0\]\.source: expected docker:\/\/HOST\[:PORT\]\/REPO\[:TAG\|@sha256:DIGEST\] \("-x" is not a tag .*\), got "docker:\/\/h\.example\/app:-x"$/],
  ['an upper-case repository', 'sync:\n  - source: docker://h.example/App\n    target: /x\n', /sync\[0\]\.source: expected docker:\/\/HOST.*\("App" is not a repository name/],
  ['an unknown scheme', 'sync:\n  - source: docker://h/a\n    target: http://h/a\n', /^f\.yaml:3: sync\[0\]\.target: expected docker:\/\/HOST.*or a store .*, got "http:\/\/h\/a"$/],
  ['a number as target', 'sync:\n  - source: docker://h/a\n    targets: [/x, 5]\n', /^f\.yaml:3: sync\[0\]\.targets\[1\]: expected a string, got number 5$/],
  ['the same target twice', 'sync:\n  - source: docker://h/a\n    targets: [docker://g/a, docker://g/a]\n', /sync\[0\]\.targets\[1\]: expected each target once/],
  ['the source as target', 'sync:\n  - source: docker://h/a\n    target: docker://h/a\n', /sync\[0\]\.target: expected a target other than the source/],
  ['a tag on the target of a repository', 'sync:\n  - source: docker://h/a\n    target: docker://g/a:v1\n', /sync\[0\]\.target: expected a repository without a tag .*unless the source is one image/],
  ['a digest target', `sync:\n  - source: docker://h/a:1\n    target: docker://g/a@sha256:${'c'.repeat(64)}\n`, /sync\[0\]\.target: expected a repository or REPO:TAG as the target/],
  ['tags with a tagged source', 'sync:\n  - source: docker://h/a:1\n    target: /x\n    tags: {names: [a]}\n', /^f\.yaml:4: sync\[0\]\.tags: expected no tags when the source names one image/],
  ['tags: {}', 'sync:\n  - source: docker://h/a\n    target: /x\n    tags: {}\n', /sync\[0\]\.tags: expected names, regex or semver/],
  ['tags as a list', 'sync:\n  - source: docker://h/a\n    target: /x\n    tags: [latest]\n', /sync\[0\]\.tags: expected a mapping of keys to values, got a list of 1$/],
  ['a bad tag name', 'sync:\n  - source: docker://h/a\n    target: /x\n    tags: {names: [".hidden"]}\n', /sync\[0\]\.tags\.names\[0\]: expected a tag/],
  ['a bad regex', 'sync:\n  - source: docker://h/a\n    target: /x\n    tags:\n      regex: ["v(1"]\n', /^f\.yaml:5: sync\[0\]\.tags\.regex\[0\]: expected a regular expression \(.*\), got "v\(1"$/],
  ['a bad semver range', 'sync:\n  - source: docker://h/a\n    target: /x\n    tags:\n      semver:\n        - ">=1.x.y.z"\n', /^f\.yaml:6: sync\[0\]\.tags\.semver\[0\]: expected a semver range such as '>=1\.2\.0 <2' or '~3\.19', got ">=1\.x\.y\.z"$/],
  ['a bad platform', 'sync:\n  - source: docker://h/a\n    target: /x\n    platforms: [linux]\n', /^f\.yaml:4: sync\[0\]\.platforms\[0\]: expected os\/arch\[\/variant\]/],
  ['no platforms', 'sync:\n  - source: docker://h/a\n    target: /x\n    platforms: []\n', /sync\[0\]\.platforms: expected at least one platform/],
  ['a store source without ids', 'sync:\n  - source: /srv/a\n    target: /srv/b\n', /^f\.yaml:2: sync\[0\]\.ids: missing; expected ids: the snapshots to copy/],
  ['a bad snapshot ID', 'sync:\n  - source: /srv/a\n    target: /srv/b\n    ids: [abc]\n', /sync\[0\]\.ids\[0\]: expected a snapshot ID \(64 lower-case hex digits\), got "abc"$/],
  ['ids for a registry', 'sync:\n  - source: docker://h/a\n    target: /srv/b\n    ids: [abc]\n', /sync\[0\]\.ids: expected ids only for a store source/],
  ['a registry target without tag for a store source', `sync:\n  - source: /srv/a\n    target: docker://h/a\n    ids: ['${'a'.repeat(64)}']\n`, /sync\[0\]\.target: expected docker:\/\/HOST\/REPO:TAG/],
  ['jobs 0', 'defaults:\n  jobs: 0\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:2: defaults\.jobs: expected an integer from 1 to 256, got number 0$/],
  ['a registry with a scheme', 'registries:\n  https://h:\n    tls: disabled\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:2: registries\["https:\/\/h"\]: unexpected key; expected a registry as HOST\[:PORT\]/],
  ['a bad tls mode', 'registries:\n  h:5000:\n    tls: off\nsync: [{source: docker://h:5000/a, target: /x}]\n', /^f\.yaml:3: registries\["h:5000"\]\.tls: expected one of enabled, insecure, disabled, got "off"$/],
  ['tls: true (skopeo\'s spelling)', 'registries:\n  h:\n    tls: true\nsync: [{source: docker://h/a, target: /x}]\n', /registries\.h\.tls: expected one of enabled, insecure, disabled, got boolean true$/],
  ['username without password', 'registries:\n  h:\n    username: u\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:2: registries\.h\.password: missing; expected password, passwordFile or passwordEnv with username$/],
  ['password without username', 'registries:\n  h:\n    password: p\nsync: [{source: docker://h/a, target: /x}]\n', /registries\.h\.username: missing; expected a username with password$/],
  ['two passwords', 'registries:\n  h:\n    username: u\n    password: p\n    passwordEnv: P\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:5: registries\.h\.passwordEnv: expected one of password, passwordFile, passwordEnv, not password and passwordEnv/],
  ['an unset passwordEnv', 'registries:\n  h:\n    username: u\n    passwordEnv: SNAPDIR_TEST_UNSET\nsync: [{source: docker://h/a, target: /x}]\n', /registries\.h\.passwordEnv: expected the name of a set environment variable \(SNAPDIR_TEST_UNSET is not set\)/],
  ['a missing passwordFile', 'registries:\n  h:\n    username: u\n    passwordFile: /nonexistent/pw\nsync: [{source: docker://h/a, target: /x}]\n', /registries\.h\.passwordFile: expected a readable file \(there is no such file\), got "\/nonexistent\/pw"$/],
  ['caFile without TLS', 'registries:\n  h:\n    tls: disabled\n    caFile: /ca.pem\nsync: [{source: docker://h/a, target: /x}]\n', /registries\.h\.caFile: expected no caFile unless tls is enabled/],
  ['a certDir that is not there', 'registries:\n  h:\n    certDir: /nonexistent/certs.d\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:3: registries\.h\.certDir: expected a directory of \*\.crt .*\(there is no \/nonexistent\/certs\.d\), got "\/nonexistent\/certs\.d"$/],
  ['certDir with TLS disabled', 'registries:\n  h:\n    tls: disabled\n    certDir: /etc\nsync: [{source: docker://h/a, target: /x}]\n', /registries\.h\.certDir: expected no certDir when tls is disabled/],
  ['a dockerConfig that is not there', 'registries:\n  h:\n    dockerConfig: /nonexistent/docker\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:3: registries\.h\.dockerConfig: expected a docker config\.json, or the directory holding one \(there is no \/nonexistent\/docker\/config\.json\), got "\/nonexistent\/docker"$/],
  ['an unknown registry key', 'registries:\n  h:\n    insecure: true\nsync: [{source: docker://h/a, target: /x}]\n', /^f\.yaml:3: registries\.h\.insecure: unexpected key; expected one of the keys username, password/],
]

describe('a bad config is one line naming the file, the line, the field and what was expected', () => {
  test.each(BAD)('%s', (_what, text, expected) => {
    let err: unknown
    try {
      parseSyncConfig(text, 'f.yaml', {})
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    const message = (err as ConfigError).message
    expect(message).toMatch(expected)
    expect(message).not.toContain('\n')
  })
})
