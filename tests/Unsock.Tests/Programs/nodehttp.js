// node's http server and client.
//   node nodehttp.js server PORT   serves 127.0.0.1:PORT until killed; prints "remote ADDR:PORT" per request
//   node nodehttp.js client URL    GETs URL once; prints "local ADDR:PORT" (its own end) and "body ..."
'use strict';
const http = require('http');
const [mode, arg] = process.argv.slice(2);
if (mode === 'server') {
  http.createServer((req, res) => {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    console.log(`remote ${remote}`);
    res.end(`you are ${remote}`);
  }).listen(Number(arg), '127.0.0.1', () => console.log('listening'));
} else {
  http.get(arg, { agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => console.log(`local ${res.socket.localAddress}:${res.socket.localPort}\nbody ${body}`));
  }).on('error', (e) => { console.log(`get: ${e.message}`); process.exit(1); });
}
