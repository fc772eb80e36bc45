// Peer token server for `make bench`: oidc-provider (a certified OAuth2/OpenID
// server) issuing opaque client_credentials access tokens at POST /token.
//
//   node server.mjs PORT CLIENT_ID CLIENT_SECRET
//
// One Node process; bench/run.py pins it to the core Envoy gets. Tokens live in
// oidc-provider's default in-memory adapter (an LRU cache), which is what a
// single-process deployment without a database uses.
import Provider from 'oidc-provider';

const [port, clientId, clientSecret] = process.argv.slice(2);
if (!port || !clientId || !clientSecret) {
  console.error('usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'default',
  }],
  scopes: ['default'],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
  // Opaque access tokens (no resource indicator -> no JWT access tokens).
  ttl: { ClientCredentials: 3600 },
  cookies: { keys: ['bench-cookie-key-not-secret'] },
  routes: { token: '/token' },
});
provider.proxy = false;

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on 127.0.0.1:${port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
