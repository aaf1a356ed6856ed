// Groups in the page: the "New group" form, the members panel of the group on screen (add,
// remove, and make admin or plain member for its owner and admins, leave for anyone) and who
// may delete which message.
// Group descriptions come from the REST API (GET/POST/PATCH /api/conversations).

import { kindOf, nameProblem, normalizeName } from '../core/ids.js';
import { $, el, showFieldError } from './dom.js';

// createGroups binds the group controls to the session, the REST client and the page.
export function createGroups({ session, api, selectConv, invalidate }) {
  const state = session.state;
  const details = new Map(); // group id -> {members: [{id, role}], name}
  const asked = new Set(); // groups whose description was requested
  let open = false; // the members panel is shown

  // roleOf is my role in a group, when its description is known.
  const roleOf = (id) => details.get(id)?.members.find((m) => m.id === state.me)?.role || '';
  const isAdmin = (id) => ['owner', 'admin'].includes(roleOf(id));

  // canDelete: my own messages, and any in a group I administer.
  const canDelete = (c, m) => !!m.id && !m.deleted && (m.from === state.me || (c.kind === 'group' && isAdmin(c.id)));

  function remember(conversation) {
    if (!conversation || typeof conversation.id !== 'string') return;
    details.set(conversation.id, { name: conversation.name || '', members: conversation.members || [] });
    const c = session.ensureConv(conversation.id);
    if (conversation.name) c.name = conversation.name;
    invalidate('convs', 'conv', 'members', 'messages', 'composer');
  }

  // describe fetches a group's description (name, members and roles).
  async function describe(id) {
    asked.add(id);
    try {
      remember((await api.conversation(id)).conversation);
    } catch (err) {
      if (err.status === 403 || err.status === 404) details.delete(id); // not (or no longer) a member
      invalidate('members');
    }
  }

  // newConversation learns the name of a group first seen in a frame.
  function newConversation(c) {
    if (c.kind === 'group' && !c.name && !asked.has(c.id) && state.me) describe(c.id);
  }

  function parseMembers(text) {
    const names = [...new Set(String(text).split(/[\s,]+/).map(normalizeName).filter(Boolean))];
    for (const n of names) {
      const problem = nameProblem(n);
      if (problem) return { problem: `“${n}”: ${problem}` };
    }
    return { names: names.filter((n) => n !== state.me) };
  }

  async function onCreate(ev) {
    ev.preventDefault();
    const nameInput = $('#group-name');
    const name = nameInput.value.trim();
    const { names, problem } = parseMembers($('#group-members').value);
    const error = !name ? 'Name the group.' : problem || (!names.length ? 'Add at least one member.' : '');
    showFieldError('group-error', error, error === 'Name the group.' ? nameInput : $('#group-members'));
    if (error) return;
    const button = $('#group-create');
    button.disabled = true;
    try {
      const { conversation } = await api.createGroup(name, names);
      remember(conversation);
      nameInput.value = '';
      $('#group-members').value = '';
      $('#group-new').open = false;
      selectConv(conversation.id);
    } catch (err) {
      showFieldError('group-error', `The group was not created: ${err.message}.`);
    } finally {
      button.disabled = false;
    }
  }

  async function change(id, patch) {
    showFieldError('member-error', '');
    try {
      remember((await api.patchConversation(id, patch)).conversation);
      return true;
    } catch (err) {
      showFieldError('member-error', `That did not work: ${err.message}.`);
      return false;
    }
  }

  async function onAdd(ev) {
    ev.preventDefault();
    const input = $('#member-name');
    const name = normalizeName(input.value);
    const problem = nameProblem(name);
    showFieldError('member-error', problem, input);
    if (problem) return;
    if (await change(state.selected, { add: [name] })) { input.value = ''; input.focus(); }
  }

  function onMembersClick(ev) {
    const promote = ev.target.closest('button[data-role-of]');
    if (promote) {
      change(state.selected, { roles: { [promote.dataset.roleOf]: promote.dataset.role } });
      return;
    }
    const button = ev.target.closest('button[data-member]');
    if (!button) return;
    const id = state.selected;
    const user = button.dataset.member;
    change(id, { remove: [user] }).then((ok) => {
      if (ok && user === state.me) { details.delete(id); open = false; invalidate('members'); }
    });
  }

  function toggle() {
    open = !open;
    if (open && kindOf(state.selected) === 'group') describe(state.selected);
    invalidate('members');
  }

  // selected tells the panel that another conversation is on screen.
  function selected() {
    open = false;
    showFieldError('member-error', '');
    if (kindOf(state.selected) === 'group' && !details.has(state.selected)) describe(state.selected);
  }

  function render() {
    const id = state.selected;
    const group = kindOf(id) === 'group';
    const toggleButton = $('#members-toggle');
    toggleButton.hidden = !group;
    toggleButton.setAttribute('aria-expanded', String(group && open));
    $('#members-panel').hidden = !group || !open;
    if (!group || !open) return;
    const d = details.get(id);
    const admin = isAdmin(id);
    $('#members').replaceChildren(...(d?.members || []).map((m) => {
      const mine = m.id === state.me;
      const removable = m.role !== 'owner' && (mine || admin);
      // The owner and admins make others admins or members again; the owner's role never changes.
      const promotable = admin && !mine && m.role !== 'owner';
      const role = m.role === 'admin' ? 'member' : 'admin';
      return el('li', { class: 'member', 'data-testid': 'member', 'data-user': m.id },
        el('span', { class: 'member-name', text: mine ? `${m.id} (you)` : m.id }),
        el('span', { class: 'member-role', 'data-testid': 'member-role', text: m.role }),
        el('span', { class: 'member-actions' },
          promotable ? el('button', { type: 'button', class: 'ghost', 'data-role-of': m.id, 'data-role': role,
            'data-testid': role === 'admin' ? 'make-admin' : 'make-member',
            'aria-label': role === 'admin' ? `Make ${m.id} an admin` : `Make ${m.id} a plain member`,
            text: role === 'admin' ? 'Make admin' : 'Remove admin' }) : null,
          removable ? el('button', { type: 'button', class: 'ghost', 'data-member': m.id, 'data-testid': mine ? 'leave' : 'remove-member',
            'aria-label': mine ? 'Leave the group' : `Remove ${m.id}`, text: mine ? 'Leave' : 'Remove' }) : null));
    }));
    $('#member-add').hidden = !admin;
  }

  function wire() {
    $('#group-form').addEventListener('submit', onCreate);
    $('#group-new').addEventListener('toggle', () => { if ($('#group-new').open) $('#group-name').focus(); });
    $('#members-toggle').addEventListener('click', toggle);
    $('#members').addEventListener('click', onMembersClick);
    $('#member-add').addEventListener('submit', onAdd);
  }

  function reset() {
    details.clear();
    asked.clear();
    open = false;
  }

  return { wire, render, canDelete, newConversation, selected, reset };
}
