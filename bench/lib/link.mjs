// An emulated network link, for the benchmarks that run over one on loopback (lazy-start-link): a
// bandwidth limit and a one-way delay per direction, shared by every connection that crosses the
// link, as a real access link is. tcp-proxy.mjs puts one between a client and a server.
//
// Each direction is a token bucket (`rate` bytes/s, `burst` bytes deep) feeding a fixed delay: a
// segment leaves once the bucket holds its bytes, and arrives `delay` later. Segments are at most
// SEGMENT bytes, so connections sharing a direction interleave instead of queueing whole reads.
// Arrival times only grow along a direction, so every connection's bytes arrive in the order sent.
// Not emulated: loss, and TCP's own congestion window (the sockets on either side are on loopback),
// which makes the link kinder to long transfers than a real one; a connection's handshake costs one
// round trip (its first bytes are held that long), as SYN, SYN-ACK do.

import { performance } from 'node:perf_hooks'

/** The largest piece a direction schedules at once: about a TCP send window's worth. */
export const SEGMENT = 16 * 1024
// what one connection may have in flight through a direction before its sender is paused
const HIGH_WATER = 256 * 1024
// timers have millisecond resolution and fire late, never early: armed this much early, and what is
// due this soon goes with what is due now, a piece arrives on time on average
const EARLY_MS = 0.5

/** One direction of a link: when a segment of `n` bytes, sent now, arrives (performance.now() ms). */
export class LinkDirection {
  constructor({ bytesPerS, delayMs, burstBytes = SEGMENT }) {
    this.bytesPerS = bytesPerS
    this.delayMs = delayMs
    this.burstMs = (burstBytes / bytesPerS) * 1000
    // when the bucket, drained by everything scheduled so far, is empty again
    this.freeAt = 0
  }

  arrival(n) {
    const now = performance.now()
    // an idle bucket refills up to its depth, no further
    this.freeAt = Math.max(this.freeAt, now - this.burstMs) + (n / this.bytesPerS) * 1000
    return Math.max(now, this.freeAt) + this.delayMs
  }
}

/**
 * A link of `mbit` Mbit/s each way and a round-trip time of `rttMs` (half of it each way).
 * { name ("100mbit-20ms"), mbit, rttMs, up, down (LinkDirection) }.
 */
export function emulatedLink({ mbit, rttMs }) {
  const dir = () => new LinkDirection({ bytesPerS: (mbit * 1e6) / 8, delayMs: rttMs / 2 })
  return { name: `${mbit}mbit-${rttMs}ms`, mbit, rttMs, up: dir(), down: dir() }
}

/** --links: "MBIT:RTT_MS,..." as emulatedLink's parameters; null when malformed. */
export function parseLinks(text) {
  const links = []
  for (const part of text.split(',')) {
    const m = /^\s*(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)\s*$/.exec(part)
    if (!m || Number(m[1]) <= 0) return null
    links.push({ mbit: Number(m[1]), rttMs: Number(m[2]) })
  }
  return links.length ? links : null
}

/**
 * Carries what `src` sends to `dst` across `direction`: each piece is written to `dst` when it
 * arrives, `onDeliver(bytes)` counting it; `src` is paused while more than HIGH_WATER of its bytes
 * are under way, and `dst` ended once `src` has ended and the last piece arrived. `holdMs`: nothing
 * leaves before then (a connection's handshake).
 */
export function carry(src, dst, direction, { onDeliver = () => {}, holdMs = 0 } = {}) {
  const queue = []
  let queued = 0
  let timer = null
  let ended = false
  const openAt = performance.now() + holdMs
  const arm = () => {
    if (timer !== null) return
    if (queue.length === 0) {
      if (ended && !dst.writableEnded) dst.end()
      return
    }
    timer = setTimeout(flush, Math.max(0, queue[0].at - performance.now() - EARLY_MS))
  }
  const flush = () => {
    timer = null
    if (dst.destroyed) return
    // all that has arrived by now goes at once
    const now = performance.now() + EARLY_MS
    while (queue.length && queue[0].at <= now) {
      const { piece } = queue.shift()
      queued -= piece.length
      onDeliver(piece.length)
      dst.write(piece)
    }
    if (queued <= HIGH_WATER / 2 && src.isPaused()) src.resume()
    arm()
  }
  const schedule = (b) => {
    for (let i = 0; i < b.length; i += SEGMENT) {
      const piece = b.subarray(i, i + SEGMENT)
      queue.push({ piece, at: direction.arrival(piece.length) })
      queued += piece.length
    }
    if (queued > HIGH_WATER) src.pause()
    arm()
  }
  src.on('data', (b) => {
    const wait = openAt - performance.now()
    if (wait <= 0) return schedule(b)
    // still in the handshake: held (and the sender paused) until the link is open
    src.pause()
    setTimeout(() => {
      schedule(b)
      if (queued <= HIGH_WATER) src.resume()
    }, wait)
  })
  src.on('end', () => {
    // an end during the handshake waits for the bytes held before it
    setTimeout(() => {
      ended = true
      arm()
    }, Math.max(0, openAt - performance.now()) + 1)
  })
}
