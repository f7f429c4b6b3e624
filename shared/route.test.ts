import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchPath } from './route.js';

test('a :param is one non-empty segment: a path of more or fewer segments is another route\'s', () => {
  assert.deepEqual(matchPath('/api/v1/inventory/event/:eventId', '/api/v1/inventory/event/7'), { eventId: '7' });
  assert.deepEqual(matchPath('/api/v1/inventory/event/:eventId', '/api/v1/inventory/event/7/'), { eventId: '7' });
  assert.equal(matchPath('/api/v1/inventory/event/:eventId', '/api/v1/inventory/event'), undefined);
  assert.equal(matchPath('/api/v1/inventory/event/:eventId', '/api/v1/inventory/event/7/extra'), undefined);
});

test('an optional last :param? matches one segment or none, never two', () => {
  assert.deepEqual(matchPath('/:page?', '/'), {});
  assert.deepEqual(matchPath('/:page?', '/app.js'), { page: 'app.js' });
  assert.deepEqual(matchPath('/:page?', '/app.js/'), { page: 'app.js' });
  assert.equal(matchPath('/:page?', '/api/v1'), undefined);
  assert.equal(matchPath('/:page?', '/api/v1/inventory/events'), undefined);
  assert.deepEqual(matchPath('/docs/:page?', '/docs'), {});
  assert.equal(matchPath('/docs/:page?', '/'), undefined);
});
