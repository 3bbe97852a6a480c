// Runs after the end-to-end tests: scans every log line the worker wrote and
// every response it gave during the whole suite (captured by the harness in
// build/e2e-capture/) for the secrets the suite used: the fake providers'
// keys, and the admin and wrong keys tests present. None may appear.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../support/harness.mjs';

const DIR = path.join(ROOT, 'build', 'e2e-capture');
const SECRETS = [/sk-test-[A-Za-z0-9_-]+/, /sk-wrong/, /admin-key-for-tests/, /admin-secret-1/, /sy_testkey_[A-Za-z0-9_-]+/];

test('no secret appears in any response or log line of the suite', () => {
  assert.ok(existsSync(DIR), 'the e2e run captured nothing: run the e2e tests first');
  const files = readdirSync(DIR).filter((f) => f.endsWith('.log'));
  let lines = 0;
  const leaks = [];
  for (const f of files) {
    for (const line of readFileSync(path.join(DIR, f), 'utf8').split('\n')) {
      if (!line) continue;
      lines++;
      for (const re of SECRETS) if (re.test(line)) leaks.push(`${f}: ${line.slice(0, 300)}`);
    }
  }
  assert.ok(lines > 500, `only ${lines} captured lines: the scan would prove little`);
  assert.deepEqual(leaks, [], `secrets leaked:\n${leaks.slice(0, 10).join('\n')}`);
});
