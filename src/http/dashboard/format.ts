/** Numbers, money, durations and times as the dashboard shows them. */

export const num = (n: number | null | undefined) =>
  n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US");
export const usd = (n: number | null | undefined) =>
  n === null || n === undefined ? "-" : `$${n < 0.01 && n > 0 ? n.toFixed(6) : n.toFixed(2)}`;

export function duration(s: number | null | undefined): string {
  if (s === null || s === undefined) return "unknown";
  if (s <= 0) return "done";
  if (s < 60) return `${Math.ceil(s)} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.round(h / 24)} days`;
}
export const when = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : "-");
/** A time of day (HH:MM), for a start or an ETA within the day. */
export const clock = (iso: string) =>
  new Date(iso).toLocaleTimeString("en-US", { hour: "2-digit", minute: "2-digit", hour12: false });
/** How long something took or has taken: unlike duration, 0 is "0 s", not "done". */
export const elapsed = (s: number | null | undefined) =>
  s === null || s === undefined ? "-" : s < 60 ? `${Math.round(s)} s` : duration(s);
