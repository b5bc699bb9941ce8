
__kernel void conv_2d_1x1(__global const DATA_TYPE *input,   /* [in_channels, pixels] */
                          __global const DATA_TYPE *filter,  /* [out_channels, in_channels] */
#ifdef BIAS
                          __global const DATA_TYPE *bias,
#endif
                          __global DATA_TYPE *output,
                          const int in_channels,
                          const int out_channels,
                          const int pixels,
                          const float relux_max_limit) {
  const int p = get_global_id(0) << 2;
  const int oc = get_global_id(1) << 2;
  if (p >= pixels || oc >= out_channels) return;
#ifdef BIAS
  DATA_TYPE4 acc0 = (DATA_TYPE4)bias[oc], acc1 = (DATA_TYPE4)bias[oc + 1];
  DATA_TYPE4 acc2 = (DATA_TYPE4)bias[oc + 2], acc3 = (DATA_TYPE4)bias[oc + 3];
#else
  DATA_TYPE4 acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
#endif
  for (int ic = 0; ic < in_channels; ++ic) {
    const DATA_TYPE4 in = vload4(0, input + ic * pixels + p);
    acc0 = mad(in, (DATA_TYPE4)filter[oc * in_channels + ic], acc0);
    acc1 = mad(in, (DATA_TYPE4)filter[(oc + 1) * in_channels + ic], acc1);
    acc2 = mad(in, (DATA_TYPE4)filter[(oc + 2) * in_channels + ic], acc2);
    acc3 = mad(in, (DATA_TYPE4)filter[(oc + 3) * in_channels + ic], acc3);
  }
  vstore4(do_activation(acc0, relux_max_limit), 0, output + oc * pixels + p);
  vstore4(do_activation(acc1, relux_max_limit), 0, output + (oc + 1) * pixels + p);
  vstore4(do_activation(acc2, relux_max_limit), 0, output + (oc + 2) * pixels + p);
  vstore4(do_activation(acc3, relux_max_limit), 0, output + (oc + 3) * pixels + p);
}
