// The back-office page. It speaks only the public GraphQL API: queries over HTTP
// (POST /graphql) and the subscriptions over graphql-transport-ws, with the same
// bearer token as any client. No framework, no build step; the DOM is built with
// createElement/textContent only (never HTML parsed from data), and no inline style
// or script exists, so the page runs under the strict CSP it is served with.
"use strict";

const TOKEN_KEY = "queryApiToken";
const PAGE_SIZE = 25;
const HISTORY_PAGE = 100;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
const STATUS_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);

// -- small helpers -----------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function formatTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function age(iso, now) {
  if (!iso) return "–";
  let s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

// A JSON Lines source's "topic" is its path: its file name says enough on screen.
function shortTopic(topic) {
  return topic.includes("/") ? topic.slice(topic.lastIndexOf("/") + 1) : topic;
}

function stateBadge(state) {
  return h("span", { class: `state ${state}`, "data-state": state }, state);
}

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

// The API reuses an end offset it read for a few seconds, so the projection can be
// past it: that is no lag, not a negative one.
function lagCell(lag) {
  if (lag === null) return h("td", {}, "–");
  if (lag < 0) return h("td", { title: `${lag}: the end offset was read a moment ago` }, "0");
  return h("td", {}, lag);
}

// -- the API: HTTP -----------------------------------------------------------------

class AuthNeeded extends Error {}

const api = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",

  headers() {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  },

  async query(query, variables) {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: this.headers(),
      body: JSON.stringify({ query, variables: variables || {} }),
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (response.status === 401) throw new AuthNeeded(this.token ? "refused" : "missing");
    let body;
    try {
      body = await response.json();
    } catch (_) {
      throw new Error(`the API answered ${response.status} without JSON`);
    }
    if (body.errors && body.errors.length) throw new Error(body.errors.map((e) => e.message).join("; "));
    if (!response.ok) throw new Error(`the API answered ${response.status}`);
    return body.data;
  },
};

// -- the API: graphql-transport-ws, reconnecting with backoff ----------------------

class LiveSocket {
  constructor(onState) {
    this.onState = onState;
    this.subscriptions = new Map(); // id -> {query, variables, next}
    this.socket = null;
    this.ready = false;
    this.delay = RECONNECT_MIN_MS;
    this.timer = null;
    this.stopped = true;
    this.everConnected = false;
    this.onReconnect = () => {};
  }

  start() {
    if (!this.stopped) return; // one socket at a time
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  }

  connect() {
    clearTimeout(this.timer);
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
    const socket = new WebSocket(url, "graphql-transport-ws");
    this.socket = socket;
    this.ready = false;
    this.onState("connecting", "connecting…");
    socket.onopen = () => {
      const payload = api.token ? { Authorization: `Bearer ${api.token}` } : {};
      socket.send(JSON.stringify({ type: "connection_init", payload }));
    };
    socket.onmessage = (event) => this.receive(socket, JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.ready = false;
      this.socket = null;
      if (this.stopped) return;
      if (event.code === 4403 || event.code === 1008) {
        this.onState("down", "live updates refused: the token was not accepted");
        app.needToken("refused");
        return;
      }
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, RECONNECT_MAX_MS);
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.onState("down", `disconnected: reconnecting in ${left} s`);
      if (left > 0) this.timer = setTimeout(tick, 1000);
      else this.connect();
    };
    tick();
  }

  receive(socket, message) {
    switch (message.type) {
      case "connection_ack":
        this.ready = true;
        this.delay = RECONNECT_MIN_MS;
        this.onState("live", "live");
        for (const [id, sub] of this.subscriptions) this.sendSubscribe(id, sub);
        if (this.everConnected) this.onReconnect();
        this.everConnected = true;
        break;
      case "ping":
        socket.send(JSON.stringify({ type: "pong" }));
        break;
      case "next": {
        const sub = this.subscriptions.get(message.id);
        if (sub && message.payload && message.payload.data) sub.next(message.payload.data);
        if (sub && message.payload && message.payload.errors) {
          showError(message.payload.errors.map((e) => e.message).join("; "));
        }
        break;
      }
      case "error":
        showError((message.payload || []).map((e) => e.message).join("; "));
        break;
      default:
        break;
    }
  }

  sendSubscribe(id, sub) {
    if (this.ready && this.socket) {
      this.socket.send(JSON.stringify({
        id, type: "subscribe", payload: { query: sub.query, variables: sub.variables },
      }));
    }
  }

  subscribe(id, query, variables, next) {
    this.unsubscribe(id);
    const sub = { query, variables, next };
    this.subscriptions.set(id, sub);
    this.sendSubscribe(id, sub);
  }

  unsubscribe(id) {
    if (!this.subscriptions.has(id)) return;
    this.subscriptions.delete(id);
    if (this.ready && this.socket) this.socket.send(JSON.stringify({ id, type: "complete" }));
  }
}

// -- queries -----------------------------------------------------------------------

const ROW_FIELDS = "id state riderId shopId orderId estimatedDeliveryAt lastEventAt eventCount";

const LIST_QUERY = `query List($filter: DeliveryFilter, $first: Int, $after: String) {
  deliveries(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { ${ROW_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const LIST_COUNT_QUERY = `query Count($filter: DeliveryFilter) {
  deliveries(filter: $filter, first: 1) { totalCount }
}`;

const LIST_SUBSCRIPTION = `subscription Rows($filter: DeliveryFilter) {
  deliveriesUpdated(filter: $filter) { ${ROW_FIELDS} }
}`;

const DETAIL_FIELDS = `id orderId shopId riderId state createdAt assignedAt pickedUpAt deliveredAt
  cancelledAt cancelReason estimatedDeliveryAt lastEventAt eventCount
  lineage { field eventId eventType occurredAt }
  history(first: $first, after: $after) {
    totalCount
    edges { node { eventId eventType known occurredAt appliedAt sequence data
      source { topic partition offset } } }
    pageInfo { hasNextPage endCursor }
  }`;

// The detail's query. Its arguments are one object so that a view of the past
// (a time slider over `delivery(id, asOf)`) adds one variable here and one
// control in renderDetail, nothing else.
function detailQuery() {
  return `query Detail($id: ID!, $first: Int, $after: String, $asOf: DateTime) {
  delivery(id: $id, asOf: $asOf) { ${DETAIL_FIELDS} } }`;
}

const DETAIL_SUBSCRIPTION = `subscription Detail($id: ID!, $first: Int, $after: String) {
  deliveryUpdated(id: $id) { ${DETAIL_FIELDS} }
}`;

const STATUS_QUERY = `{ projectionStatus { generation eventsApplied unknownEvents deadLetters lastEventAt
  partitions { topic partition nextOffset endOffset lag } } }`;

const RIDER_QUERY = `query Rider($riderId: ID!, $from: Date!, $to: Date!) {
  riderDailyStats(riderId: $riderId, from: $from, to: $to) {
    date assigned completed cancelled avgDeliverySeconds }
}`;

// -- the page ----------------------------------------------------------------------

const app = {
  filter: {},
  cursors: [null], // the `after` of each page seen; the last one is the current page's
  rows: new Map(), // id -> {node, tr}
  selected: null,
  detail: null, // {id, events: [...], pageInfo}
  asOf: null, // the time slider's moment (an event's occurredAt), null for now
  moments: [], // the open delivery's distinct occurredAt times, the slider's stops
  status: null,
  live: null,
  countTimer: null,

  init() {
    this.live = new LiveSocket((state, text) => {
      const el = $("live-status");
      el.dataset.state = state;
      el.textContent = text;
    });
    this.live.onReconnect = () => {
      // Whatever changed while the socket was down: read the page again.
      this.loadList();
      this.loadStatus();
      if (this.selected) this.loadDetail(this.selected);
    };
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      api.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      this.start();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      api.token = "";
      this.needToken("missing");
    });
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      this.applyFilter();
    });
    $("filter-state").addEventListener("change", () => this.applyFilter());
    $("next-page").addEventListener("click", () => this.nextPage());
    $("first-page").addEventListener("click", () => {
      this.cursors = [null];
      this.loadList();
    });
    $("detail-close").addEventListener("click", () => this.closeDetail());
    $("timeline-more").addEventListener("click", () => this.moreHistory());
    $("detail-asof").addEventListener("input", () => this.slide(false));
    $("detail-asof").addEventListener("change", () => this.slide(true));
    $("rider-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.loadRider();
    });
    const today = new Date();
    const weekAgo = new Date(today.getTime() - 6 * 86400000);
    $("rider-from").value = weekAgo.toISOString().slice(0, 10);
    $("rider-to").value = today.toISOString().slice(0, 10);
    setInterval(() => this.tickAges(), 1000);
    setInterval(() => { if (!$("app").hidden) this.loadStatus(); }, STATUS_EVERY_MS);
    this.start();
  },

  async start() {
    showError("");
    try {
      await this.loadStatus(true);
    } catch (err) {
      if (err instanceof AuthNeeded) return this.needToken(err.message);
      showError(`The API cannot be reached: ${err.message}`);
      return undefined;
    }
    $("auth").hidden = true;
    $("app").hidden = false;
    $("token-forget").hidden = !api.token;
    await this.loadList();
    this.subscribeRows();
    this.live.start();
    return undefined;
  },

  needToken(why) {
    // No data on the page without a token: clear everything that was shown.
    this.live.stop();
    this.rows.clear();
    $("rows").replaceChildren();
    $("timeline").replaceChildren();
    $("status-fields").replaceChildren();
    $("partitions").replaceChildren();
    $("rider-chart").replaceChildren();
    $("total").textContent = "–";
    this.selected = null;
    $("detail").hidden = true;
    $("app").hidden = true;
    $("auth").hidden = false;
    $("token-forget").hidden = true;
    $("auth-message").textContent = why === "refused"
      ? "The API refused this token. Paste a valid bearer token to see the deliveries."
      : "This API asks every client for a bearer token. Paste yours to see the deliveries; "
        + "it is kept in this tab's session storage only.";
    const live = $("live-status");
    live.dataset.state = "down";
    live.textContent = "no token";
    $("token").focus();
  },

  async guarded(work) {
    try {
      await work();
      showError("");
    } catch (err) {
      if (err instanceof AuthNeeded) this.needToken(err.message);
      else showError(err.message);
    }
  },

  // -- list ------------------------------------------------------------------------

  applyFilter() {
    const filter = {};
    const state = $("filter-state").value;
    const rider = $("filter-rider").value.trim();
    if (state) filter.states = [state];
    if (rider) filter.riderId = rider;
    this.filter = filter;
    this.cursors = [null];
    this.loadList();
    this.subscribeRows();
  },

  loadList() {
    return this.guarded(async () => {
      const after = this.cursors[this.cursors.length - 1];
      const data = await api.query(LIST_QUERY, { filter: this.filter, first: PAGE_SIZE, after });
      const page = data.deliveries;
      this.rows.clear();
      const tbody = $("rows");
      tbody.replaceChildren();
      for (const edge of page.edges) tbody.append(this.row(edge.node));
      $("total").textContent = String(page.totalCount);
      this.endCursor = page.pageInfo.endCursor;
      $("next-page").disabled = !page.pageInfo.hasNextPage;
      $("first-page").disabled = this.cursors.length === 1;
      $("page-label").textContent = `page ${this.cursors.length}`;
      $("rows").dataset.page = String(this.cursors.length);
      $("rows").dataset.last = page.pageInfo.hasNextPage ? "false" : "true";
    });
  },

  nextPage() {
    if (!this.endCursor) return;
    this.cursors.push(this.endCursor);
    this.loadList();
  },

  row(node) {
    const tr = h("tr", { "data-id": node.id });
    tr.addEventListener("click", () => this.openDetail(node.id));
    this.rows.set(node.id, { node, tr });
    this.fillRow(tr, node);
    return tr;
  },

  fillRow(tr, node) {
    tr.replaceChildren(
      h("td", { class: "id" }, node.id),
      h("td", {}, stateBadge(node.state)),
      h("td", {}, node.riderId || "–"),
      h("td", {}, node.shopId || "–"),
      h("td", {}, node.estimatedDeliveryAt ? formatTime(node.estimatedDeliveryAt).slice(11) : "–"),
      h("td", { class: "num" }, node.eventCount),
      h("td", { class: "age", "data-at": node.lastEventAt, title: formatTime(node.lastEventAt) },
        age(node.lastEventAt, Date.now())),
    );
    tr.classList.toggle("selected", node.id === this.selected);
  },

  flash(el) {
    el.classList.remove("flash");
    void el.offsetWidth; // restart the animation
    el.classList.add("flash");
  },

  subscribeRows() {
    this.live.subscribe("rows", LIST_SUBSCRIPTION, { filter: this.filter }, (data) => {
      this.rowChanged(data.deliveriesUpdated);
    });
  },

  rowChanged(node) {
    const known = this.rows.get(node.id);
    if (known) {
      known.node = node;
      this.fillRow(known.tr, node);
      this.flash(known.tr);
      const tbody = $("rows");
      if (this.cursors.length === 1 && tbody.firstChild !== known.tr) tbody.prepend(known.tr);
    } else if (this.cursors.length === 1) {
      // A delivery new to this filter: on top of the first page (newest first).
      const tr = this.row(node);
      $("rows").prepend(tr);
      this.flash(tr);
    }
    this.refreshCountSoon();
  },

  // At most one count (and status) read per half second, however many rows change.
  refreshCountSoon() {
    if (this.countTimer) return;
    this.countTimer = setTimeout(async () => {
      this.countTimer = null;
      await this.guarded(async () => {
        const data = await api.query(LIST_COUNT_QUERY, { filter: this.filter });
        $("total").textContent = String(data.deliveries.totalCount);
      });
      await this.loadStatus(); // the offsets and counts moved with the change
    }, 500);
  },

  tickAges() {
    const now = Date.now();
    for (const cell of document.querySelectorAll("[data-at]")) {
      cell.textContent = age(cell.dataset.at, now);
    }
  },

  // -- detail ----------------------------------------------------------------------

  openDetail(id) {
    this.selected = id;
    this.asOf = null;
    for (const { node, tr } of this.rows.values()) tr.classList.toggle("selected", node.id === id);
    this.loadDetail(id);
    this.live.subscribe("detail", DETAIL_SUBSCRIPTION, { id, first: HISTORY_PAGE, after: null },
      (data) => {
        if (this.selected === id && !this.asOf) this.renderDetail(data.deliveryUpdated, true);
      });
  },

  closeDetail() {
    this.selected = null;
    this.live.unsubscribe("detail");
    $("detail").hidden = true;
    for (const { tr } of this.rows.values()) tr.classList.remove("selected");
  },

  loadDetail(id) {
    return this.guarded(async () => {
      const asOf = this.asOf;
      const data = await api.query(detailQuery(), { id, first: HISTORY_PAGE, after: null, asOf });
      if (this.selected !== id || this.asOf !== asOf) return;
      if (!data.delivery) {
        showError(`Delivery ${id} is not in the read model.`);
        return;
      }
      this.renderDetail(data.delivery, false);
    });
  },

  async moreHistory() {
    const detail = this.detail;
    if (!detail || !detail.pageInfo.hasNextPage) return;
    await this.guarded(async () => {
      const data = await api.query(detailQuery(), {
        id: detail.delivery.id, first: HISTORY_PAGE, after: detail.pageInfo.endCursor,
        asOf: this.asOf,
      });
      if (!data.delivery || this.detail !== detail) return;
      const history = data.delivery.history;
      for (const edge of history.edges) $("timeline").append(this.event(edge.node, false));
      detail.pageInfo = history.pageInfo;
      $("timeline-more").hidden = !history.pageInfo.hasNextPage;
    });
  },

  renderDetail(delivery, pushed) {
    const previous = this.detail && this.detail.delivery.id === delivery.id
      ? new Set(this.detail.eventIds) : null;
    const history = delivery.history;
    this.detail = {
      delivery,
      pageInfo: history.pageInfo,
      eventIds: history.edges.map((e) => e.node.eventId),
    };
    $("detail").hidden = false;
    $("detail").dataset.id = delivery.id;
    $("detail-id").textContent = delivery.id;
    $("detail-state").replaceChildren(stateBadge(delivery.state));
    const fields = [
      ["State", delivery.state, "state"],
      ["ETA", formatTime(delivery.estimatedDeliveryAt), "estimatedDeliveryAt"],
      ["Rider", delivery.riderId || "–", "riderId"],
      ["Shop", delivery.shopId || "–", "shopId"],
      ["Order", delivery.orderId || "–", "orderId"],
      ["Created", formatTime(delivery.createdAt), "createdAt"],
      ["Assigned", formatTime(delivery.assignedAt), "assignedAt"],
      ["Picked up", formatTime(delivery.pickedUpAt), "pickedUpAt"],
      ["Delivered", formatTime(delivery.deliveredAt), "deliveredAt"],
      ["Cancelled", delivery.cancelledAt
        ? `${formatTime(delivery.cancelledAt)} (${delivery.cancelReason || "no reason"})` : "–",
      "cancelledAt"],
      ["Last event", `${formatTime(delivery.lastEventAt)}`, "lastEventAt"],
      ["Events", `${delivery.eventCount}`, "eventCount"],
    ];
    // Lineage on hover: which event set each field (the fold's own answer).
    const setBy = new Map((delivery.lineage || []).map((l) => [l.field, l]));
    $("detail-fields").replaceChildren(...fields.flatMap(([k, v, field]) => {
      const by = setBy.get(field);
      const dd = by
        ? h("dd", { class: "set-by", "data-field": field, "data-set-by": by.eventId,
          title: `set by ${by.eventType} ${by.eventId}, occurred ${formatTime(by.occurredAt)}` }, v)
        : h("dd", { "data-field": field }, v);
      if (by) {
        const source = () => document.querySelector(`#timeline li[data-event-id="${CSS.escape(by.eventId)}"]`);
        dd.addEventListener("mouseenter", () => source()?.classList.add("source"));
        dd.addEventListener("mouseleave", () => source()?.classList.remove("source"));
      }
      return [h("dt", {}, k), dd];
    }));
    this.renderSlider(history);
    const rider = delivery.riderId;
    if (rider) {
      const link = h("button", { type: "button", class: "link" }, "daily statistics");
      link.addEventListener("click", () => {
        $("rider-id").value = rider;
        this.loadRider();
      });
      $("detail-fields").children[5].append(" ", link);
    }
    $("timeline").replaceChildren(
      ...history.edges.map((e) => this.event(e.node, pushed && previous && !previous.has(e.node.eventId))));
    $("timeline").dataset.total = String(history.totalCount);
    $("timeline-more").hidden = !history.pageInfo.hasNextPage;
    const known = this.rows.get(delivery.id);
    if (known && pushed) {
      known.node = { ...known.node, ...delivery };
      this.fillRow(known.tr, known.node);
    }
  },

  // -- the time slider: the detail as of each moment one of its events occurred ------

  renderSlider(history) {
    if (!this.asOf) {
      this.moments = [...new Set(history.edges.map((e) => e.node.occurredAt))];
    }
    const slider = $("detail-asof");
    slider.max = String(this.moments.length);
    const at = this.asOf ? this.moments.indexOf(this.asOf) : -1;
    slider.value = String(at < 0 ? this.moments.length : at);
    $("detail-asof-label").textContent = this.asOf ? `as of ${formatTime(this.asOf)}` : "now";
    $("detail").classList.toggle("past", !!this.asOf);
  },

  slide(load) {
    const index = Number($("detail-asof").value);
    const asOf = index < this.moments.length ? this.moments[index] : null;
    $("detail-asof-label").textContent = asOf ? `as of ${formatTime(asOf)}` : "now";
    if (!load || !this.selected || asOf === this.asOf) return;
    this.asOf = asOf;
    this.loadDetail(this.selected);
  },

  event(node, fresh) {
    const li = h("li", { class: node.known ? "" : "unknown", "data-event-id": node.eventId,
      "data-type": node.eventType },
    h("span", { class: "type" }, node.eventType),
    node.known ? null : h("span", { class: "tag", title: "not in the event catalogue: kept, changes no state" }, "unknown type"),
    h("div", { class: "meta" },
      `occurred ${formatTime(node.occurredAt)} · applied ${formatTime(node.appliedAt)}`),
    h("div", { class: "meta", title: `topic ${node.source.topic}` },
      `${shortTopic(node.source.topic)} partition ${node.source.partition}, `
      + `offset ${node.source.offset}`
      + (node.sequence === null ? "" : ` · sequence ${node.sequence}`)),
    Object.keys(node.data || {}).length
      ? h("div", { class: "data" }, JSON.stringify(node.data)) : null);
    if (fresh) this.flash(li);
    return li;
  },

  // -- status ----------------------------------------------------------------------

  async loadStatus(rethrow) {
    const work = async () => {
      const data = await api.query(STATUS_QUERY);
      this.renderStatus(data.projectionStatus);
    };
    if (rethrow) return work();
    return this.guarded(work);
  },

  renderStatus(status) {
    const fields = [
      ["Generation", status.generation],
      ["Events applied", status.eventsApplied],
      ["Unknown events", status.unknownEvents],
      ["Dead letters", status.deadLetters],
      ["Newest event", status.lastEventAt ? formatTime(status.lastEventAt) : "–"],
    ];
    const items = fields.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
    items.push(h("dt", {}, "Newest event age"),
      h("dd", { "data-at": status.lastEventAt || "" }, age(status.lastEventAt, Date.now())));
    $("status-fields").replaceChildren(...items);
    $("partitions").replaceChildren(...status.partitions.map((p) => h("tr", {},
      h("td", { title: p.topic }, shortTopic(p.topic)), h("td", {}, p.partition),
      h("td", {}, p.nextOffset),
      h("td", {}, p.endOffset === null ? "–" : p.endOffset),
      lagCell(p.lag))));
  },

  // -- rider statistics --------------------------------------------------------------

  loadRider() {
    const riderId = $("rider-id").value.trim();
    const from = $("rider-from").value;
    const to = $("rider-to").value;
    if (!riderId || !from || !to) return undefined;
    return this.guarded(async () => {
      const data = await api.query(RIDER_QUERY, { riderId, from, to });
      this.renderChart(riderId, data.riderDailyStats);
    });
  },

  renderChart(riderId, days) {
    const chart = $("rider-chart");
    const series = ["assigned", "completed", "cancelled"];
    const max = Math.max(1, ...days.flatMap((d) => series.map((s) => d[s])));
    const bar = 16; // wide enough for a two-digit label over each bar
    const group = bar * series.length + 12;
    const height = 120;
    const top = 14;
    const width = Math.max(240, days.length * group + 20);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height + 34}`, role: "img",
      "aria-label": `daily statistics of ${riderId}` });
    days.forEach((day, i) => {
      series.forEach((name, j) => {
        const value = day[name];
        const barHeight = Math.round((value / max) * (height - top));
        const x = 10 + i * group + j * bar;
        const rect = svg("rect", { class: name, x, y: height - barHeight, width: bar - 1,
          height: barHeight });
        rect.append(svg("title", {}, `${day.date} ${name}: ${value}`));
        root.append(rect);
        if (value) root.append(svg("text", { x: x + bar / 2 - 1, y: height - barHeight - 2,
          "text-anchor": "middle" }, String(value)));
      });
      root.append(svg("text", { x: 10 + i * group + (bar * series.length) / 2, y: height + 14,
        "text-anchor": "middle" }, day.date.slice(5)));
    });
    series.forEach((name, j) => {
      root.append(svg("rect", { class: name, x: 10 + j * 80, y: height + 22, width: 10, height: 10 }));
      root.append(svg("text", { x: 24 + j * 80, y: height + 31 }, name));
    });
    const total = days.reduce((n, d) => n + d.completed, 0);
    const times = days.filter((d) => d.avgDeliverySeconds !== null);
    const mean = times.length
      ? Math.round(times.reduce((n, d) => n + d.avgDeliverySeconds * d.completed, 0)
        / Math.max(1, times.reduce((n, d) => n + d.completed, 0)) / 60) : null;
    chart.replaceChildren(root, h("p", { class: "empty" },
      `${riderId}: ${total} completed` + (mean === null ? "" : `, ${mean} min from pick-up on average`)));
  },
};

document.addEventListener("DOMContentLoaded", () => app.init());
