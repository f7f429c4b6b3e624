import * as functions from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';

// Baseline: a plain functions-framework function served by the framework's
// own Express server (its testing entry), with no work of ours around it.
functions.http('hello', (_req, res) => {
  res.send('hello');
});
getTestServer('hello').listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
