/** A small CSV reader: commas, double-quoted fields with "" escapes, # comment lines skipped. */
export function parseCsv (text: string): string[][] {
  const rows: string[][] = []
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue
    const fields: string[] = []
    let cur = ''
    let quoted = false
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++ } else if (ch === '"') quoted = false
        else cur += ch
      } else if (ch === '"' && cur.trim() === '') {
        quoted = true
        cur = ''
      } else if (ch === ',') {
        fields.push(cur.trim())
        cur = ''
      } else cur += ch
    }
    fields.push(cur.trim())
    rows.push(fields)
  }
  return rows
}

function toNum (s: string | undefined): number | null {
  if (s === undefined || s.trim() === '') return null
  const n = Number(s)
  return Number.isFinite(n) ? n : null
}

export interface TestDataRow {
  category: string
  variable: string
  value: number | string | null
  expected: number | string | null
  tol: number | string | null
  units: string
  comment: string
  status: string
  type: string
}

/**
 * db:csv->test-data's row rule: category,variable,value,expected,tol,units,
 * comment,status,type. A missing status is computed when value and expected
 * are numbers: a numeric tol passes iff |value-expected| <= tol; a tol of
 * > < >= <= compares value to expected. Otherwise the status is n/a.
 */
export function csvRowToTestData (fields: readonly string[]): TestDataRow {
  const [category = '', variable = '', valueS, expectedS, tolS, units = '', comment = '', statusS, type = ''] = fields
  const value = toNum(valueS)
  const expected = toNum(expectedS)
  const tolText = (tolS ?? '').trim()
  const tol = toNum(tolS)
  let status = (statusS ?? '').trim()
  if (status === '' && value !== null && expected !== null) {
    if (tol !== null) status = Math.abs(value - expected) <= tol ? 'pass' : 'fail'
    else if (tolText === '>') status = value > expected ? 'pass' : 'fail'
    else if (tolText === '<') status = value < expected ? 'pass' : 'fail'
    else if (tolText === '>=') status = value >= expected ? 'pass' : 'fail'
    else if (tolText === '<=') status = value <= expected ? 'pass' : 'fail'
  }
  return {
    category,
    variable,
    value: value ?? (valueS === undefined || valueS === '' ? null : valueS),
    expected: expected ?? (expectedS === undefined || expectedS === '' ? null : expectedS),
    tol: tol ?? (tolText === '' ? null : tolText),
    units,
    comment,
    status: status === '' ? 'n/a' : status,
    type
  }
}
