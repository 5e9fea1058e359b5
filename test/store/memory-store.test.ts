import { randomBytes } from 'node:crypto'
import { MemoryStore } from '../../src/store/memory-store.js'
import { storeConformance } from './conformance.js'

storeConformance('memory', { fresh: async () => new MemoryStore(randomBytes(4).toString('hex')), localChunks: false })
