// Tag selection by name, regex and semver range, less excludes, as a sync entry's `tags:` says.
import { describe, expect, test } from 'vitest'
import { parseSyncConfig, type TagFilter } from '../../src/sync/sync-config.js'
import { selectTags, tagVersion } from '../../src/sync/tag-filter.js'

/** The filter a `tags:` mapping (YAML flow text) makes, read as the config reads it. */
function filter(tags: string): TagFilter {
  return parseSyncConfig(`sync: [{source: docker://h/a, target: /x, tags: ${tags}}]`, 'f.yaml').entries[0]!.tags!
}

const TAGS = ['latest', 'edge', '3', '3.18', '3.18.4', '3.19', '3.19.0', '3.19.1', '3.20.0-rc1', 'v3.19.2', '3.19-alpine', '4.0.0', 'v10', 'v1', 'bookworm', 'sha256-abc.sig']

describe('tag selection', () => {
  test('names select exactly those tags', () => {
    expect(selectTags(TAGS, filter('{names: [latest, edge, nope]}'))).toEqual(['edge', 'latest'])
  })

  test('a regex must match the whole tag: v1 does not select v10', () => {
    expect(selectTags(TAGS, filter('{regex: ["v1"]}'))).toEqual(['v1'])
    expect(selectTags(TAGS, filter('{regex: ["v\\\\d+"]}'))).toEqual(['v1', 'v10'])
  })

  test('a semver range: lenient versions (3.19 is 3.19.0, a leading v), prereleases only when asked', () => {
    expect(selectTags(TAGS, filter('{semver: [">=3.19.0 <4"]}'))).toEqual(['3.19', '3.19.0', '3.19.1', 'v3.19.2'])
    expect(selectTags(TAGS, filter('{semver: ["~3.18"]}'))).toEqual(['3.18', '3.18.4'])
    expect(selectTags(TAGS, filter('{semver: [">=3.20.0-rc0 <3.21"]}'))).toEqual(['3.20.0-rc1'])
    expect(selectTags(TAGS, filter('{semver: ["^4"]}'))).toEqual(['4.0.0'])
  })

  test('names, regex and semver add up; exclude takes away', () => {
    expect(selectTags(TAGS, filter('{names: [latest], regex: ["v.*"], semver: ["~3.19"], exclude: ["v10", "3\\\\.19\\\\.0"]}'))).toEqual(['v1', '3.19', '3.19.1', 'v3.19.2', 'latest'])
  })

  test('no filter: every tag, versions first in order, then the rest by name', () => {
    expect(selectTags(['b', '1.10.0', 'a', '1.9.0'], null)).toEqual(['1.9.0', '1.10.0', 'a', 'b'])
  })

  test('what is a version', () => {
    expect(tagVersion('v1.2.3-rc.1+build.5')?.version).toBe('1.2.3-rc.1')
    expect(tagVersion('3')?.version).toBe('3.0.0')
    expect(tagVersion('01.2')).toBeNull()
    expect(tagVersion('1.2.3.4')).toBeNull()
    expect(tagVersion('latest')).toBeNull()
  })
})
