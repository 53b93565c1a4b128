"""Pure encode/decode between meters and Readings: Modbus register maps, read planning, register
codecs (``protocols.modbus``), MQTT payload codecs (``protocols.payloads``), the Reading
(``protocols.reading``) and the error tree (``protocols.errors``). No sockets, clock or logging."""
