// How the browser tests start Debian's Chromium: the binary (overridable
// with SWITCHYARD_CHROMIUM) and its flags. Without the background-networking
// flags Chromium keeps trying to reach Google's hosts, which this machine's
// closed network refuses.

export const CHROMIUM = process.env.SWITCHYARD_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
