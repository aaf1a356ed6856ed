// The conversation model: dedupe by id, seq order, receipts that only rise, history paging.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as conv from '../../../static/core/conv.js';

const m = (seq, from = 'bob', extra = {}) => ({ id: `id${seq}`, seq, from, body: `m${seq}`, ts: seq, ...extra });
const seqs = (c) => c.messages.map((x) => x.seq);

describe('insertMessage', () => {
  test('keeps messages in seq order whatever order they arrive in', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    for (const s of [3, 1, 5, 2, 4]) assert.equal(conv.insertMessage(c, m(s)), true);
    assert.deepEqual(seqs(c), [1, 2, 3, 4, 5]);
  });

  test('drops a message whose id it holds', () => {
    const c = conv.newConv('public', 0);
    conv.insertMessage(c, m(1));
    assert.equal(conv.insertMessage(c, m(1)), false);
    assert.equal(conv.insertMessage(c, { ...m(1), body: 'other' }), false);
    assert.deepEqual(seqs(c), [1]);
    assert.equal(c.messages[0].body, 'm1');
  });

  test('a tombstone replaces the message with the same id, once', () => {
    const c = conv.newConv('g:team', 0);
    conv.insertMessage(c, m(1));
    assert.equal(conv.insertMessage(c, { ...m(1), body: '', deleted: true }), true);
    assert.deepEqual([c.messages[0].deleted, c.messages[0].body], [true, '']);
    assert.equal(conv.insertMessage(c, { ...m(1), body: '', deleted: true }), false);
    assert.equal(conv.insertMessage(c, m(1)), false, 'a late copy does not bring the body back');
    assert.equal(c.messages[0].deleted, true);
  });

  test('a tombstone for an unknown id goes in as deleted', () => {
    const c = conv.newConv('g:team', 0);
    conv.insertMessage(c, { ...m(2), body: 'secret', deleted: true });
    assert.deepEqual([c.messages[0].body, c.messages[0].deleted], ['', true]);
  });

  test('last follows the contiguous seqs only', () => {
    const c = conv.newConv('public', 0);
    conv.insertMessage(c, m(1));
    conv.insertMessage(c, m(3));
    assert.equal(c.last, 1);
    assert.equal(conv.hasGap(c), true);
    conv.insertMessage(c, m(2));
    assert.equal(c.last, 3);
    assert.equal(conv.hasGap(c), false);
  });

  test('keeps at most `keep` messages, dropping the oldest', () => {
    const c = conv.newConv('public', 0);
    c.keep = 3;
    for (let s = 1; s <= 5; s++) conv.insertMessage(c, m(s));
    assert.deepEqual(seqs(c), [3, 4, 5]);
    assert.equal(c.byId.has('id1'), false);
  });
});

describe('receipts', () => {
  test('a peer mark never goes down, and read implies delivered', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    assert.equal(conv.applyReceipt(c, { user: 'bob', seq: 5, status: 'read' }, 'alice'), true);
    assert.deepEqual(c.marks.get('bob'), { delivered: 5, read: 5 });
    assert.equal(conv.applyReceipt(c, { user: 'bob', seq: 3, status: 'read' }, 'alice'), false);
    assert.equal(conv.applyReceipt(c, { user: 'bob', seq: 4, status: 'delivered' }, 'alice'), false);
    assert.deepEqual(c.marks.get('bob'), { delivered: 5, read: 5 });
    conv.applyReceipt(c, { user: 'bob', seq: 7, status: 'delivered' }, 'alice');
    assert.deepEqual(c.marks.get('bob'), { delivered: 7, read: 5 });
  });

  test('my own read mark from another device only rises', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    conv.applyReceipt(c, { user: 'alice', seq: 4, status: 'read' }, 'alice');
    assert.deepEqual([c.read, c.sentRead], [4, 4]);
    assert.equal(conv.applyReceipt(c, { user: 'alice', seq: 2, status: 'read' }, 'alice'), false);
    assert.equal(conv.applyReceipt(c, { user: 'alice', seq: 9, status: 'delivered' }, 'alice'), false);
    assert.equal(c.read, 4);
  });

  test('a receipt without a numeric seq changes nothing', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    assert.equal(conv.applyReceipt(c, { user: 'bob', seq: '5', status: 'read' }, 'alice'), false);
    assert.equal(c.marks.size, 0);
  });

  test('the receipt owed: read when the read mark rose, else delivered of the newest from others', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    for (const s of [1, 2]) conv.insertMessage(c, m(s));
    conv.insertMessage(c, m(3, 'alice'));
    assert.deepEqual(conv.nextReceipt(c, 'alice'), { type: 'receipt', conv: c.id, seq: 2, status: 'delivered' });
    conv.receiptSent(c, conv.nextReceipt(c, 'alice'), 10);
    assert.equal(conv.nextReceipt(c, 'alice'), null, 'nothing new to report');
    c.read = 3;
    const read = conv.nextReceipt(c, 'alice');
    assert.deepEqual(read, { type: 'receipt', conv: c.id, seq: 3, status: 'read' });
    conv.receiptSent(c, read, 20);
    assert.deepEqual([c.sentRead, c.sentDelivered, c.receiptAt], [3, 3, 20]);
    assert.equal(conv.nextReceipt(c, 'alice'), null);
  });

  test('public gets read marks but no delivered ones', () => {
    const c = conv.newConv('public', 0);
    conv.insertMessage(c, m(1));
    assert.equal(conv.nextReceipt(c, 'alice'), null);
    c.read = 1;
    assert.equal(conv.nextReceipt(c, 'alice').status, 'read');
  });

  test('my message shows sent, delivered, then read', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    conv.insertMessage(c, m(1, 'alice'));
    const mine = c.messages[0];
    assert.equal(conv.ownStatus(c, mine, 'alice'), 'sent');
    conv.applyReceipt(c, { user: 'bob', seq: 1, status: 'delivered' }, 'alice');
    assert.equal(conv.ownStatus(c, mine, 'alice'), 'delivered');
    conv.applyReceipt(c, { user: 'bob', seq: 1, status: 'read' }, 'alice');
    assert.equal(conv.ownStatus(c, mine, 'alice'), 'read');
    assert.equal(conv.ownStatus(c, mine, 'bob'), '', 'not under others\' messages');
  });
});

describe('unread counts', () => {
  test('count others\' live messages above the read mark', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    for (const s of [1, 2, 3]) conv.insertMessage(c, m(s));
    conv.insertMessage(c, m(4, 'alice'));
    conv.insertMessage(c, m(5, 'bob', { deleted: true }));
    assert.equal(conv.unreadCount(c, 'alice'), 3);
    c.read = 2;
    assert.equal(conv.unreadCount(c, 'alice'), 1);
  });

  test('the server\'s count stands for what it covered; messages above it add to it', () => {
    const c = conv.newConv('g:team', 0);
    conv.applySummary(c, { id: c.id, name: 'Team', unread: 4, last_message: m(9) });
    assert.equal(c.name, 'Team');
    assert.equal(conv.unreadCount(c, 'alice'), 4);
    assert.equal(conv.lastMessage(c).seq, 9);
    for (const s of [8, 9]) conv.insertMessage(c, m(s)); // a sync's copies of what the count covered
    assert.equal(conv.unreadCount(c, 'alice'), 4);
    conv.insertMessage(c, m(10));
    assert.equal(conv.unreadCount(c, 'alice'), 5);
    assert.equal(conv.lastMessage(c).seq, 10);
    c.read = 10;
    assert.equal(conv.unreadCount(c, 'alice'), 0, 'read up to the newest');
  });

  test('nothing unread on the server means read up to its newest message here', () => {
    const c = conv.newConv('dm:alice:bob', 0);
    for (const s of [1, 2, 3]) conv.insertMessage(c, m(s));
    conv.applySummary(c, { id: c.id, name: 'bob', unread: 0, last_message: m(3) });
    assert.deepEqual([c.read, c.sentRead, conv.unreadCount(c, 'alice')], [3, 3, 0]);
    assert.equal(c.name, '', 'a direct conversation is named after the peer, not the list');
  });

  test('a deleted last message is listed without its body', () => {
    const c = conv.newConv('g:team', 0);
    conv.applySummary(c, { id: c.id, name: 'Team', unread: 1, last_message: { ...m(2), body: 'x', deleted: true } });
    assert.deepEqual([c.lastHint.deleted, c.lastHint.body], [true, '']);
  });
});

describe('history paging', () => {
  test('the newest page, then pages below the oldest held, until next_before is absent', () => {
    const c = conv.newConv('dm:carol:dave', 0);
    const first = conv.historyFrame(c, true);
    assert.deepEqual(first, { type: 'history', conv: c.id, limit: conv.PAGE });
    conv.historyRequested(c, true);
    assert.equal(conv.historyFrame(c, false), null, 'one page in flight at a time');
    const page = (hi, lo) => Array.from({ length: hi - lo + 1 }, (_, i) => m(hi - i));
    assert.equal(conv.applyHistoryPage(c, { conv: c.id, messages: page(130, 81), next_before: 81 }), true);
    assert.equal(c.last, 130, 'the newest page is held up to its top');
    assert.equal(c.older, 'more');
    assert.equal(conv.hasOlder(c), true);

    const second = conv.historyFrame(c, false);
    assert.deepEqual(second, { type: 'history', conv: c.id, limit: conv.PAGE, before: 81 });
    conv.historyRequested(c, false);
    assert.equal(conv.applyHistoryPage(c, { conv: c.id, before: 81, messages: page(80, 31), next_before: 31 }), false);
    conv.historyRequested(c, false);
    conv.applyHistoryPage(c, { conv: c.id, before: 31, messages: page(30, 1) });
    assert.equal(c.older, 'done');
    assert.equal(conv.hasOlder(c), false);
    assert.deepEqual(seqs(c), Array.from({ length: 130 }, (_, i) => i + 1));
  });

  test('older pages raise the number of messages kept', () => {
    const c = conv.newConv('public', 0);
    c.keep = 2;
    conv.historyRequested(c, false);
    conv.applyHistoryPage(c, { conv: c.id, before: 10, messages: [m(9), m(8), m(7)], next_before: 7 });
    assert.deepEqual(seqs(c), [7, 8, 9]);
  });

  test('a page with gaps in its seqs still has a next page', () => {
    const c = conv.newConv('public', 0);
    conv.historyRequested(c, false);
    conv.applyHistoryPage(c, { conv: c.id, before: 60, messages: [m(59), m(40)], next_before: 40 });
    assert.equal(c.older, 'more');
  });

  test('malformed page entries are skipped', () => {
    const c = conv.newConv('public', 0);
    conv.historyRequested(c, true);
    conv.applyHistoryPage(c, { conv: c.id, messages: [{ id: 1, seq: 2 }, { id: 'x', seq: '3' }, m(1)] });
    assert.deepEqual(seqs(c), [1]);
  });
});
