"""The Lua scripts of the Redis rate-limit backend (SPEC §10), each one atomic on one end user's keys (see
``redis.py`` for the keys): admit (check and count), adjust (a TPM correction), restore (the write-back of the
admissions an instance made while Redis was away, or that a Redis restart lost).
"""

from __future__ import annotations

from typing import Final

# Shared by the admit and restore scripts, with ``win``, ``st`` and ``now`` set: the window's state read, then the
# admissions that left the window (up to 500 per call) dropped and subtracted from ``sum`` (``stored`` keeps the sum
# as read, so the caller writes '#' only when it changed).
_TRIM: Final = """local cutoff = now - WINDOW
local state = redis.call('HMGET', st, '#', 'd', 'n')
local stored = tonumber(state[1]) or 0
local sum = stored
local day = math.floor(now / DAY)
local today = 0
if tonumber(state[2]) == day then today = tonumber(state[3]) or 0 end
while true do
  local old = redis.call('ZRANGEBYSCORE', win, '-inf', cutoff, 'LIMIT', 0, 500)
  if #old == 0 then break end
  local amounts = redis.call('HMGET', st, unpack(old))
  for i = 1, #amounts do sum = sum - (tonumber(amounts[i]) or 0) end
  redis.call('HDEL', st, unpack(old))
  redis.call('ZREM', win, unpack(old))
  if #old < 500 then break end
end
"""

# ARGV: id rpm rpd tpm T_p n output_limit min_output now_ms (limit 0 = none; now_ms -1 = the server clock).
# Returns {refused wait in_window today tokens window_reset tokens_reset day_reset reserved clamp}: refused is a
# bitmask (1 rpm, 2 rpd, 4 tpm), clamp -1 when none. Every redis.call costs a microsecond or more, so the admitting
# path makes as few as it can: 8 (TIME included), and 4 more when admissions leave the window.
ADMIT_LUA: Final = (
    """
local WINDOW, DAY = 60000, 86400000
local win, st = KEYS[1], KEYS[2]
local a = ARGV
local id = a[1]
local now = tonumber(a[9])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""
    + _TRIM
    + """local count = redis.call('ZCARD', win)
if count == 0 then
  -- The window expired while idle (or never existed): drop whatever admissions the state hash still holds.
  if redis.call('HLEN', st) > 3 then
    redis.call('DEL', st)
    stored = 0
    if today > 0 then
      redis.call('HSET', st, 'd', day, 'n', today)
      redis.call('PEXPIRE', st, (day + 1) * DAY - now + WINDOW)
    end
  end
  sum = 0
end
local rpm, rpd, tpm = tonumber(a[2]), tonumber(a[3]), tonumber(a[4])
local prompt, n, out, minout = tonumber(a[5]), tonumber(a[6]), tonumber(a[7]), tonumber(a[8])
local refused, wait = 0, 0
if rpm > 0 and count >= rpm then
  refused = refused + 1
  local at = redis.call('ZRANGE', win, count - rpm, count - rpm, 'WITHSCORES')
  wait = math.max(wait, tonumber(at[2]) + WINDOW - now)
end
if rpd > 0 and today >= rpd then
  refused = refused + 2
  wait = math.max(wait, (day + 1) * DAY - now)
end
local reserve, clamp = prompt + n * out, -1
if tpm > 0 then
  local headroom = tpm - sum
  local minimum = prompt + n * math.min(minout, out)
  if reserve > headroom then
    if minimum <= headroom then
      clamp = math.floor((headroom - prompt) / n)
      reserve = prompt + n * clamp
    else
      refused = refused + 4
      local tw = WINDOW
      if minimum <= tpm then
        local excess, freed, start, found = sum - (tpm - minimum), 0, 0, false
        while not found do
          local batch = redis.call('ZRANGE', win, start, start + 199, 'WITHSCORES')
          if #batch == 0 then break end
          local ids = {}
          for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
          local amounts = redis.call('HMGET', st, unpack(ids))
          for i = 1, #ids do
            freed = freed + (tonumber(amounts[i]) or 0)
            if freed >= excess then
              tw = math.max(0, tonumber(batch[2 * i]) + WINDOW - now)
              found = true
              break
            end
          end
          start = start + 200
        end
      end
      wait = math.max(wait, tw)
    end
  end
end
local until_midnight = (day + 1) * DAY - now
if refused == 0 then
  redis.call('ZADD', win, now, id)
  count, today, sum = count + 1, today + 1, sum + reserve
  redis.call('HSET', st, id, reserve, '#', sum, 'd', day, 'n', today)
  redis.call('PEXPIRE', win, WINDOW + 1000)
  redis.call('PEXPIRE', st, until_midnight + WINDOW)
  local treset = 0
  if sum > 0 then treset = WINDOW end
  return {0, 0, count, today, sum, WINDOW, treset, until_midnight, reserve, clamp}
end
if sum ~= stored then
  redis.call('HSET', st, '#', sum)  -- what the trim took out, also when nothing is admitted
end
local wreset, treset = 0, 0
if count > 0 then
  local last = redis.call('ZRANGE', win, -1, -1, 'WITHSCORES')
  wreset = math.max(0, tonumber(last[2]) + WINDOW - now)
  if sum > 0 then treset = wreset end
end
return {refused, wait, count, today, sum, wreset, treset, until_midnight, 0, -1}
"""
)

# ARGV: id, tokens. A no-op once the admission left the window (or its keys expired).
ADJUST_LUA: Final = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], '#', tonumber(ARGV[2]) - tonumber(old))
return 1
"""

# ARGV: now_ms (-1 = the server clock), as_of_ms, day, requests, then id stamp tokens per admission: the write-back
# of one end user's admissions (SPEC §10). Times come on the instance's wall clock read at as_of_ms, before this
# script ran, so now - as_of_ms is at least the offset between the two clocks: every time is shifted by it, never
# earlier than it really was on the server clock. An id the window holds already is not added again; ``requests``
# join today's count unless they belong to another day (the two clocks straddle midnight by at most their offset).
# Trims expired admissions first, as the admit script does, so '#' stays the sum of what the window holds.
RESTORE_LUA: Final = (
    """
local WINDOW, DAY = 60000, 86400000
local win, st = KEYS[1], KEYS[2]
local a = ARGV
local now = tonumber(a[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local shift = now - tonumber(a[2])
"""
    + _TRIM
    + """if redis.call('ZCARD', win) == 0 then
  redis.call('DEL', st)
  sum = 0
end
for i = 5, #a, 3 do
  local at = math.min(tonumber(a[i + 1]) + shift, now)
  if at > cutoff and redis.call('ZADD', win, 'NX', at, a[i]) == 1 then
    local tokens = tonumber(a[i + 2])
    redis.call('HSET', st, a[i], tokens)
    sum = sum + tokens
  end
end
if math.abs(tonumber(a[3]) - day) <= 1 then today = today + tonumber(a[4]) end
redis.call('HSET', st, '#', sum, 'd', day, 'n', today)
redis.call('PEXPIRE', win, WINDOW + 1000)
redis.call('PEXPIRE', st, (day + 1) * DAY - now + WINDOW)
return {redis.call('ZCARD', win), today, sum}
"""
)
