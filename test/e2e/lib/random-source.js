'use strict'
// Shared by load-client.js and load-server.js: sends n random bytes on a socket as fast as it
// takes them (honouring backpressure), hashing them on the way.
const { createHash, randomBytes } = require('node:crypto')

/**
 * Starts sending; done(hash) runs once all n bytes are written (possibly before this returns). Returns the running sha256 and the
 * count sent so far (both also valid if the socket fails half-way).
 */
function sendRandom(s, n, done) {
  const hash = createHash('sha256')
  let sent = 0
  const pump = () => {
    while (sent < n) {
      const chunk = randomBytes(Math.min(256 * 1024, n - sent))
      hash.update(chunk)
      sent += chunk.length
      if (!s.write(chunk)) return void s.once('drain', pump)
    }
    done(hash)
  }
  pump()
  return { hash, sent: () => sent }
}

module.exports = { sendRandom }
