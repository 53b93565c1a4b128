-- Service requests tracked against the published service standards (contract §13, issue 16).
--
-- A deadline is N working days after the day a request is filed: Monday to Friday, except the days
-- in public_holidays (servicedesk/calendar.py has the rule). N comes from the service standard in
-- force on the filing day for the request's kind, the customer's class (residential when the
-- customer's tariff group is `residential`, else non-residential) and area (town or countryside,
-- from service_areas). The request keeps the standard, N, its area and class and its deadline as
-- computed when filed, so later changes of these tables never move an existing deadline.

-- ---- working days --------------------------------------------------------------------------------
-- Days off besides Saturdays and Sundays. `basis`: `fixed` (a date in the Labour Code 2019,
-- Law 45/2019/QH14, art. 112(1)), `lunar` (a lunar-calendar holiday of art. 112(1) on the date the
-- government announced), `adjacent` (the day next to National Day, art. 112(1)(đ), chosen yearly
-- by the Prime Minister, art. 112(3)), `compensatory` (a holiday falling on a weekend is taken on
-- the next working day, art. 111(3)), `estimated` (not announced when this was written: the usual
-- split, to be replaced by the announced dates).
--
-- Not seeded, on purpose:
-- * Swapped working days (a Monday off "made up" on a Saturday, e.g. 31 Aug 2026 for 22 Aug 2026):
--   they bind civil servants only, not enterprises such as the power corporations (Ministry of
--   Labour submission 89/TTr-LĐTBXH of 20 Nov 2014: swaps "không áp dụng với doanh nghiệp").
-- * 24 Nov, Vietnamese Culture Day: the Politburo chose it as a paid holiday (Resolution 80-NQ/TW)
--   and the government asked for the Labour Code to be amended (Resolution 30/NQ-CP, Feb 2026;
--   vneconomy.vn 26 Feb 2026, vnexpress.net 17 Jan 2026). The amendment in force was not found
--   (python-holidays 0.108 already lists it from 2026); add the rows when it is.
CREATE TABLE public_holidays (
    day     date PRIMARY KEY,
    name    text NOT NULL,
    basis   text NOT NULL CHECK (basis IN ('fixed', 'lunar', 'adjacent', 'compensatory', 'estimated')),
    source  text NOT NULL
);

INSERT INTO public_holidays (day, name, basis, source) VALUES
-- 2026
('2026-01-01', 'Tết Dương lịch (New Year)', 'fixed', 'Labour Code 2019 art. 112(1)(a)'),
('2026-02-16', 'Tết Nguyên đán (29 tháng Chạp)', 'lunar',
 'Tết 2026 for public employees Mon 16 – Fri 20 Feb 2026 (Prime Minister''s decision as reported by VNA, vietnammedia.vnanet.vn 17 Oct 2025; congan.com.vn); Labour Code art. 112(1)(b); lunar new year 17 Feb 2026 (python-holidays, lunardate)'),
('2026-02-17', 'Tết Nguyên đán (mùng 1)', 'lunar', 'as 2026-02-16'),
('2026-02-18', 'Tết Nguyên đán (mùng 2)', 'lunar', 'as 2026-02-16'),
('2026-02-19', 'Tết Nguyên đán (mùng 3)', 'lunar', 'as 2026-02-16'),
('2026-02-20', 'Tết Nguyên đán (mùng 4)', 'lunar', 'as 2026-02-16'),
('2026-04-26', 'Giỗ Tổ Hùng Vương (10/3 âm lịch, Sunday)', 'lunar',
 'Labour Code art. 112(1)(e); 10th day of the 3rd lunar month = Sun 26 Apr 2026 (thanhnien.vn 23 Feb 2026; lunardate)'),
('2026-04-27', 'Nghỉ bù Giỗ Tổ Hùng Vương', 'compensatory',
 'Labour Code art. 111(3): the holiday fell on Sunday 26 Apr 2026 (thanhnien.vn 23 Feb 2026)'),
('2026-04-30', 'Ngày Chiến thắng (Reunification Day)', 'fixed', 'Labour Code 2019 art. 112(1)(c)'),
('2026-05-01', 'Ngày Quốc tế Lao động (Labour Day)', 'fixed', 'Labour Code 2019 art. 112(1)(d)'),
('2026-09-01', 'Quốc khánh (ngày liền kề)', 'adjacent',
 'Labour Code art. 112(1)(đ), 112(3); 2026 plan of the Ministry of Home Affairs (baomoi, Oct 2025) and python-holidays 0.108 (citing thuvienphapluat.vn on the 2026 National Day): Tue 1 Sep. UNVERIFIED against the decision text'),
('2026-09-02', 'Quốc khánh (National Day)', 'fixed', 'Labour Code 2019 art. 112(1)(đ)'),
-- 2027
('2027-01-01', 'Tết Dương lịch (New Year)', 'fixed', 'Labour Code 2019 art. 112(1)(a)'),
('2027-02-04', 'Tết Nguyên đán (nghỉ thay cho thứ Bảy 6/2)', 'estimated',
 'NOT YET ANNOUNCED. Lunar new year Sat 6 Feb 2027 (lunardate; python-holidays). Art. 112(1)(b): 5 days; the days falling on Sat/Sun moved to the nearest working days as python-holidays 0.108 estimates (Thu 4, Fri 5, Mon 8, Tue 9, Wed 10 Feb). Replace with the Prime Minister''s decision'),
('2027-02-05', 'Tết Nguyên đán (30 tháng Chạp)', 'estimated', 'as 2027-02-04'),
('2027-02-08', 'Tết Nguyên đán (mùng 3)', 'estimated', 'as 2027-02-04'),
('2027-02-09', 'Tết Nguyên đán (mùng 4)', 'estimated', 'as 2027-02-04'),
('2027-02-10', 'Tết Nguyên đán (mùng 5)', 'estimated', 'as 2027-02-04'),
('2027-04-16', 'Giỗ Tổ Hùng Vương (10/3 âm lịch)', 'lunar',
 'Labour Code art. 112(1)(e); 10th day of the 3rd lunar month = Fri 16 Apr 2027 (lunardate, python-holidays 0.108); computed, not from an announcement'),
('2027-04-30', 'Ngày Chiến thắng (Reunification Day)', 'fixed', 'Labour Code 2019 art. 112(1)(c)'),
('2027-05-01', 'Ngày Quốc tế Lao động (Labour Day, Saturday)', 'fixed', 'Labour Code 2019 art. 112(1)(d)'),
('2027-05-03', 'Nghỉ bù Ngày Quốc tế Lao động', 'compensatory',
 'Labour Code art. 111(3): 1 May 2027 is a Saturday'),
('2027-09-02', 'Quốc khánh (National Day)', 'fixed', 'Labour Code 2019 art. 112(1)(đ)'),
('2027-09-03', 'Quốc khánh (ngày liền kề)', 'estimated',
 'NOT YET ANNOUNCED: art. 112(3) leaves the adjacent day to the Prime Minister; Fri 3 Sep 2027 as python-holidays 0.108 estimates');

-- ---- service standards ---------------------------------------------------------------------------
-- `customer_class` and `area` may be `any`; the most specific row in force wins
-- (servicedesk/standards.py). A new standard from a date is one insert.
CREATE TABLE service_standards (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('new_supply', 'meter_check', 'contract_change', 'complaint')),
    customer_class  text NOT NULL CHECK (customer_class IN ('residential', 'non_residential', 'any')),
    area            text NOT NULL CHECK (area IN ('town', 'countryside', 'any')),
    working_days    smallint NOT NULL CHECK (working_days BETWEEN 1 AND 365),
    effective_from  date NOT NULL,
    source          text NOT NULL,
    UNIQUE (kind, customer_class, area, effective_from)
);

INSERT INTO service_standards (kind, customer_class, area, working_days, effective_from, source) VALUES
('new_supply', 'residential', 'town', 3, '2017-05-15',
 'Contract §13; EVN Decision 505/QĐ-EVN in force 15 May 2017: low-voltage supply ≤ 3 working days in cities, towns and townships (thietbidiencantho.com report); EVN SPC/CPC service catalogues (cskh.cpc.vn)'),
('new_supply', 'residential', 'countryside', 5, '2017-05-15',
 'Contract §13; EVN Decision 505/QĐ-EVN: ≤ 5 working days in rural areas'),
('new_supply', 'non_residential', 'any', 7, '2017-05-15',
 'Contract §13; chinhphu.vn 2016: non-residential meters installed within 7 days'),
('contract_change', 'any', 'any', 3, '2017-05-15',
 'evn.com.vn "Các dịch vụ miễn phí trong quá trình thực hiện HĐMBĐ": change of party, information, purpose, households, renewal, termination ≤ 3 working days'),
('meter_check', 'any', 'any', 3, '2017-05-15',
 'UNVERIFIED: Doxa default, as the other in-contract services (≤ 3 working days, evn.com.vn); the published meter-check figure was not found'),
('complaint', 'any', 'any', 5, '2017-05-15',
 'UNVERIFIED: Doxa default; the published complaint-handling figure was not found');

-- ---- town or countryside -------------------------------------------------------------------------
-- By customer-code prefix: the longest prefix listed wins (a branch's unit code such as PB0101,
-- or a whole customer code for one customer). A customer matching no row counts as `town`: the
-- stricter standard, so an unclassified request is never shown as on time by mistake.
CREATE TABLE service_areas (
    customer_prefix  text PRIMARY KEY CHECK (customer_prefix ~ '^[A-Z0-9]{1,13}$'),
    area             text NOT NULL CHECK (area IN ('town', 'countryside')),
    note             text NOT NULL DEFAULT ''
);

-- ---- requests ------------------------------------------------------------------------------------
CREATE TABLE service_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    kind            text NOT NULL CHECK (kind IN ('new_supply', 'meter_check', 'contract_change', 'complaint')),
    description     text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    contact_phone   text NOT NULL CHECK (length(contact_phone) BETWEEN 1 AND 32),
    province        text NOT NULL,          -- the customer's, when filed
    customer_class  text NOT NULL CHECK (customer_class IN ('residential', 'non_residential')),
    area            text NOT NULL CHECK (area IN ('town', 'countryside')),
    standard_id     integer NOT NULL REFERENCES service_standards (id),
    working_days    smallint NOT NULL,
    filed_at        timestamptz NOT NULL,
    deadline_at     timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'received'
                    CHECK (state IN ('received', 'in_progress', 'done', 'rejected')),
    closed_at       timestamptz,
    client_address  text NOT NULL DEFAULT '',
    CHECK ((state IN ('done', 'rejected')) = (closed_at IS NOT NULL))
);
CREATE INDEX service_requests_customer_idx ON service_requests (customer_id, filed_at DESC);
CREATE INDEX service_requests_deadline_idx ON service_requests (deadline_at);
CREATE INDEX service_requests_open_idx ON service_requests (deadline_at) WHERE closed_at IS NULL;

-- Every state a request went through, with who, when and the note (the first row is the filing).
CREATE TABLE service_request_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint NOT NULL REFERENCES service_requests (id),
    at          timestamptz NOT NULL,
    actor       text NOT NULL,             -- a staff username, or 'customer'
    from_state  text,
    to_state    text NOT NULL,
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 1000)
);
CREATE INDEX service_request_events_request_idx ON service_request_events (request_id, id);
