#!/usr/bin/env node
// Issues a gateway key: prints the key (give it to the client, once) and the
// entry that authorises it (its SHA-256, never the key), ready for the
// GATEWAY_KEYS secret or for KV (revocable without a redeploy).
//
//   npm run keygen -- --name my-app [--routes chat,smart]
import { randomBytes, createHash } from 'node:crypto';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const name = opt('name');
if (!name || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
  console.error('usage: npm run keygen -- --name <client name> [--routes chat,smart]');
  process.exit(2);
}
const routes = opt('routes')?.split(',').map((r) => r.trim()).filter(Boolean);
const key = `sy_${randomBytes(32).toString('base64url')}`;
const sha256 = createHash('sha256').update(key).digest('hex');
const entry = { name, sha256, ...(routes?.length ? { routes } : {}) };

console.log(`Gateway key for ${name} (shown once; the gateway stores only its hash):\n\n  ${key}\n`);
console.log('Either add this entry to the JSON list in the GATEWAY_KEYS secret:');
console.log(`\n  ${JSON.stringify(entry)}\n`);
console.log('  npx wrangler secret put GATEWAY_KEYS   # paste the whole list, e.g. [{...},{...}]\n');
console.log('or store it in KV, where deleting it (or setting "revoked": true) revokes it within about a minute:');
console.log(`\n  npx wrangler kv key put --binding STATE 'sy:v1:key:${sha256}' '${JSON.stringify(entry)}' --remote\n`);
