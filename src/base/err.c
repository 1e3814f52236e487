/* SPDX-License-Identifier: MIT */
#include "base.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char err_buf[512];
static _Thread_local int err_code;

static const struct {
	int code;
	const char *text;
} own_errors[] = {
	{DPRT_EBADPKG, "malformed or corrupt package"},
	{DPRT_EVERSION, "unsupported format version"},
	{DPRT_ESHAPE, "tensor shape does not match the model"},
	{DPRT_EDTYPE, "tensor datatype does not match the model"},
	{DPRT_EINPUT, "invalid input value"},
	{DPRT_ENOMODEL, "unknown model"},
	{DPRT_ENODEV, "no such device"},
	{DPRT_EDEVICE, "device failure"},
	{DPRT_EBADPLAN, "malformed plan or plan made for another model or machine"},
	{DPRT_EUNSUP, "not supported"},
	{DPRT_EWEIGHTS, "weight file does not match the model"},
	{DPRT_EOVERLOAD, "overloaded, try again later"},
	{DPRT_EUSAGE, "bad usage"},
	{DPRT_ETOOMANY, "model has more inputs or outputs than dprt serves"},
	{DPRT_EOUTBUF, "outputs need a bigger buffer"},
	{DPRT_EACTMEM, "request needs too much activation memory"},
};

const char *dprt_strerror(int code)
{
	size_t i;

	if (code == 0)
		return "success";
	for (i = 0; i < ARRAY_SIZE(own_errors); i++)
		if (own_errors[i].code == code)
			return own_errors[i].text;
	if (code < 0 && code > -4096)
		return strerror(-code);
	return "unknown error";
}

int err_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	err_code = code;
	return code;
}

const char *err_msg(int code)
{
	if (err_buf[0] && (err_code == code || code == 0))
		return err_buf;
	return dprt_strerror(code);
}

void err_clear(void)
{
	err_buf[0] = 0;
	err_code = 0;
}
